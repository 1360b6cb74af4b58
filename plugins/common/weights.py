"""Loading a checkpoint folder into a MindSpore ``Cell`` whose parameter names match it, and back."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn

from plugins.common.checkpoint import Checkpoint

DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}


def ms_dtype(name: str) -> ms.dtype:
    """``"float32"`` -> ``mindspore.float32`` (also float16, bfloat16)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)}") from None


def load_weights(cell: nn.Cell, folder: str | Path, what: str = "model") -> None:
    """Fill ``cell``'s parameters from ``folder``, a lookup by name.

    Names and shapes are checked against the safetensors headers first, so a
    checkpoint that does not fit fails before any tensor is read. Each array read
    from the file becomes its parameter's storage (``from_numpy`` shares it; a dtype
    that differs is cast), so a tensor is copied once, from the file into memory.
    Parameters built under ``mindspore.nn.utils.no_init_parameters`` are never
    materialised with random values: loading them costs only the checkpoint's bytes.
    """
    checkpoint = Checkpoint(folder)
    params = dict(cell.parameters_and_names())
    checkpoint.check({name: tuple(p.shape) for name, p in params.items()}, what)
    for name, array in checkpoint.tensors():
        params[name].set_data(ms.from_numpy(array))


def seed_parameters(cell: nn.Cell, seed: int) -> None:
    """Redraw ``cell``'s randomly initialised parameters from ``seed``, each with the mean and
    spread its initialiser gave it; constant ones (norm weights, zero biases) stay as they are.

    MindSpore's initialisers are not seedable per model; this makes "random weights"
    reproducible, for a preset or a test, without changing their scale.
    """
    rng = np.random.default_rng(seed)
    for _, param in sorted(cell.parameters_and_names(), key=lambda item: item[0]):
        values = param.float().asnumpy()
        spread = float(values.std())
        if spread == 0.0:
            continue
        drawn = rng.standard_normal(param.shape).astype(np.float32) * np.float32(spread) + values.mean()
        param.set_data(ms.Tensor(drawn, dtype=param.dtype))


def save_weights(cell: nn.Cell, folder: str | Path, filename: str = "model.safetensors") -> Path:
    """Write ``cell``'s parameters to ``folder/filename`` (float32 safetensors, checkpoint names)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(param.float().asnumpy()) for name, param in cell.parameters_and_names()}
    save_file(tensors, str(folder / filename))
    return folder / filename
