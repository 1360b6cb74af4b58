"""Layers the text encoders need beyond ``plugins.common.layers``.

Parameters start as zeros that MindSpore allocates lazily, so building an 8B
model before loading its checkpoint costs no random initialisation. They may be
stored in a narrower dtype than the float32 they compute in: the CPU backend has
no bf16/fp16 matmul, and float32 storage of the 8B LLaMA does not fit in 24 GiB.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, mint, nn, ops
from mindspore.common.initializer import initializer


def zeros(shape: tuple[int, ...], dtype: ms.dtype = ms.float32) -> Parameter:
    return Parameter(initializer("zeros", shape, dtype))


def as_float(x: Tensor) -> Tensor:
    return x if x.dtype == ms.float32 else x.astype(ms.float32)


class Linear(nn.Cell):
    """A dense layer with PyTorch's ``weight [out, in]``/``bias`` names, computing in float32."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: ms.dtype = ms.float32) -> None:
        super().__init__()
        self.weight = zeros((out_features, in_features), dtype)
        self.bias = zeros((out_features,), dtype) if bias else None

    def construct(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else as_float(self.bias)
        return mint.nn.functional.linear(x, as_float(self.weight), bias)


class Embedding(nn.Cell):
    """A lookup table named ``weight`` (MindSpore's own calls it ``embedding_table``).

    The CPU backend cannot gather bf16, so a bf16 table is kept in float32."""

    def __init__(self, num_embeddings: int, dim: int, dtype: ms.dtype = ms.float32) -> None:
        super().__init__()
        self.weight = zeros((num_embeddings, dim), ms.float32 if dtype == ms.bfloat16 else dtype)

    def construct(self, ids: Tensor) -> Tensor:
        return as_float(ops.gather(self.weight, ids, 0))


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
        param.set_data(Tensor(value, dtype=param.dtype))
