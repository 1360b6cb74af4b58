"""Loading a checkpoint folder into a MindSpore ``Cell`` whose parameter names match it."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
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
    checkpoint that does not fit fails before any tensor is read.
    """
    checkpoint = Checkpoint(folder)
    params = dict(cell.parameters_and_names())
    checkpoint.check({name: tuple(p.shape) for name, p in params.items()}, what)
    for name, array in checkpoint.tensors():
        param = params[name]
        param.set_data(ms.Tensor(array, dtype=param.dtype))
