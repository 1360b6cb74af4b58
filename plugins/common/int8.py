"""int8 linear layers on AMX (``compute_dtype="int8"``), by the compiled kernel ``native/linear.cpp``.

Symmetric quantization, one scale per row: a weight is quantized once, per output (its row's
largest magnitude maps to 127), and each input row (token) likewise as the kernel lays it out;
the int32 sums times both scales are the product, to which bias, activation, gate and residual
are applied as on the bf16 path. AMX's int8 products run at twice the rate of its bf16 ones.

Only linear layers take int8, and only those the kernel can take (K a multiple of 64, N of 32)
and whose weight carries no LoRA adapter; the others, the attention, the norms and the residual
stream are those of the bf16 path. It needs the compiled module and AMX's int8 tiles.
"""

from __future__ import annotations

import os

import numpy as np
from mindspore import Parameter

from plugins.common import native, onednn
from plugins.common.precision import QUANTIZED, Stored, bf16_operand, store, stored_of


def unavailable() -> str | None:
    """Why int8 matmuls cannot run here (one clause), or None when they can."""
    if (absent := native.missing()) is not None:
        return f"the compiled kernels are not used: {absent}"
    if "amx_int8" not in onednn._cpu_flags():
        if "amx_int8" in onednn._flags_of_cpu():
            return f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} holds back AMX-INT8"
        return "this CPU has no AMX-INT8 instructions"
    return None


def takes(weight_shape: tuple[int, ...]) -> bool:
    """Whether the kernel takes a weight of this shape ``[N, K...]`` (K flattened)."""
    width = int(np.prod(weight_shape[1:]))
    return width % 64 == 0 and weight_shape[0] % 32 == 0


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x [M, K]`` (float32, or bf16 bits as ``uint16``; K a multiple of 64) as int8 and one
    float32 scale per row: ``rint(x * 127 / max|row|)``, ties to even, scale ``max|row| / 127``
    (1 for a row of zeros)."""
    if x.ndim != 2 or x.shape[1] % 64 or x.dtype not in (np.float32, np.uint16):
        raise ValueError(f"quantize_rows: expected [M, K] float32 or bf16 bits with K a multiple of 64, got "
                         f"{x.dtype} {x.shape}")
    if (reason := unavailable()) is not None:
        raise RuntimeError(f"int8 quantization cannot run here: {reason}")
    x = np.ascontiguousarray(x)
    quantized, scales = np.empty(x.shape, np.int8), np.empty(x.shape[0], np.float32)
    native.library().zoo_quantize_rows(onednn._native_pool(), x.ctypes.data, int(x.dtype == np.float32), x.shape[1],
                                       *x.shape, quantized.ctypes.data, scales.ctypes.data)
    return quantized, scales


def operand(param: Parameter) -> tuple[np.ndarray, np.ndarray] | None:
    """``param`` (a weight ``[N, K...]``) quantized per output row, and its rows' scales; None where
    the kernel cannot take it (its shape, or LoRA adapters, which can change between calls).

    Quantized once: the int8 rows then replace the parameter's storage (see ``precision``), so a
    bf16 weight's memory (or a streamed one's pages) is given back and the weight costs half of
    it from then on. Anything else that reads the parameter widens the int8 rows."""
    if getattr(param, "adapters", None) or not takes(param.shape):
        return None
    stored = stored_of(param)
    if stored is None or stored.dtype != QUANTIZED:
        bits, done = bf16_operand(param)
        rows, scales = quantize_rows(bits.reshape(bits.shape[0], -1))
        if done is not None:
            done()
        stored = Stored(rows.reshape(param.shape), QUANTIZED, scale=scales)
        store(param, stored)
    return stored.array.reshape(stored.array.shape[0], -1), stored.scale


def linear(x: np.ndarray, weight: tuple[np.ndarray, np.ndarray], bias: np.ndarray | None = None,
           activation: str | None = None, gate: np.ndarray | None = None, residual: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """``onednn.linear`` with ``weight`` an ``operand`` (int8 rows and their scales): the input
    (float32 or bf16 bits, rows may be strided) quantized per row, the product in int8."""
    quantized, scales = weight
    out = np.empty((x.shape[0], quantized.shape[0]), np.float32) if out is None else out
    if not onednn._fused_linear(x, quantized, bias, activation, gate, residual, out, scales):
        raise ValueError(f"the int8 linear kernel cannot take x {x.dtype} {x.shape} by weight {quantized.shape} "
                         f"into {out.dtype} {out.shape} here: it needs K a multiple of 64 and N of 32, float32 "
                         f"or bf16 rows with contiguous columns, and a CPU with AMX-INT8")
    return out
