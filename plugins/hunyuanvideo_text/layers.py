"""Layers the text encoders need beyond ``plugins.common.layers``."""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import initializer

from plugins.common.precision import Stored, store, stored_of, to_float32


class Embedding(nn.Cell):
    """A lookup table named ``weight`` (MindSpore's own calls it ``embedding_table``).

    A loaded table is gathered on the host from its stored values and only the rows
    looked up are widened: the CPU backend cannot gather bf16, and widening LLaMA-3's
    128K-row table to float32 would cost 2 GB for a few hundred rows."""

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.weight = Parameter(initializer("zeros", (num_embeddings, dim), ms.float32))

    def construct(self, ids: Tensor) -> Tensor:
        stored = stored_of(self.weight)
        if stored is None:
            return ops.gather(self.weight, ids, 0)
        rows = stored.array[ids.asnumpy()]
        if stored.streamed:
            stored.release()
        return ms.from_numpy(to_float32(rows, stored.dtype))


def randomize(cell: nn.Cell, seed: int, std: float) -> None:
    """Random parameters, as a fresh transformers model has them: matrices normal with
    ``std``, norm weights one, biases zero."""
    rng = np.random.default_rng(seed)
    for name, param in sorted(cell.parameters_and_names()):
        if len(param.shape) >= 2:
            value = rng.standard_normal(param.shape, dtype=np.float32) * np.float32(std)
        elif "norm" in name and name.endswith("weight"):
            value = np.ones(param.shape, np.float32)
        else:
            value = np.zeros(param.shape, np.float32)
        store(param, Stored(value, "F32"))
