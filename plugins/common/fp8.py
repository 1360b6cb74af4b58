"""Decoding 8-bit floats (``float8_e4m3fn``, ``float8_e5m2``) with numpy, which has no fp8 type.

An fp8 tensor is held as its ``uint8`` bits; widening it is one lookup in a 256-entry
float32 table per element (``np.take``), which runs at memory speed and needs no extra
dependency. ComfyUI's "scaled fp8" multiplies each tensor by a per-tensor scale after the
cast, in the compute dtype; folding the scale into the table gives the same float32
products (one rounding each) in the same single pass.
"""

from __future__ import annotations

from functools import cache

import numpy as np

FP8 = ("F8_E4M3", "F8_E5M2")  # safetensors' names


def _table(exponent_bits: int, mantissa_bits: int, finite_only: bool) -> np.ndarray:
    """The float32 value of every byte of an fp8 format (IEEE-like, with subnormals).

    ``finite_only`` (e4m3fn): no infinities, and only the all-ones pattern is NaN; otherwise
    (e5m2) an all-ones exponent is an infinity or a NaN as in IEEE 754.
    """
    bits = np.arange(256, dtype=np.int64)
    sign = np.where(bits >> 7, -1.0, 1.0)
    exponent = (bits >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = bits & ((1 << mantissa_bits) - 1)
    bias = (1 << (exponent_bits - 1)) - 1
    fraction = mantissa / (1 << mantissa_bits)
    normal = (1.0 + fraction) * np.exp2(exponent - bias)
    subnormal = fraction * np.exp2(1 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    top = (1 << exponent_bits) - 1
    if finite_only:
        values[(exponent == top) & (mantissa == (1 << mantissa_bits) - 1)] = np.nan
    else:
        values[(exponent == top) & (mantissa == 0)] = sign[(exponent == top) & (mantissa == 0)] * np.inf
        values[(exponent == top) & (mantissa != 0)] = np.nan
    return values.astype(np.float32)


@cache
def table(dtype: str) -> np.ndarray:
    """The 256-entry decoding table of ``dtype`` (``F8_E4M3`` or ``F8_E5M2``), read-only."""
    if dtype == "F8_E4M3":
        values = _table(4, 3, finite_only=True)
    elif dtype == "F8_E5M2":
        values = _table(5, 2, finite_only=False)
    else:
        raise ValueError(f"{dtype} is not an fp8 dtype ({', '.join(FP8)})")
    values.flags.writeable = False
    return values


def scaled_table(dtype: str, scale: float | None) -> np.ndarray:
    """The table with each entry multiplied by ``scale`` in float32 (the table itself if None)."""
    values = table(dtype)
    return values if scale is None else values * np.float32(scale)
