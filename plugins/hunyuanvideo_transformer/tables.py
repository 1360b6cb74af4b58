"""Input-independent tables computed on the host in float32: the sinusoidal embedding
of timesteps and the cos/sin tables of the 3D rotary embedding.

The float32 arithmetic follows diffusers' (``get_timestep_embedding``,
``get_1d_rotary_pos_embed``) step by step, so the tables agree to rounding.
"""

from __future__ import annotations

import functools
import math

import numpy as np

TIMESTEP_CHANNELS = 256


def timestep_sinusoids(values: np.ndarray, channels: int = TIMESTEP_CHANNELS,
                       max_period: float = 10000.0) -> np.ndarray:
    """``[B]`` -> ``[B, channels]``: ``cos`` then ``sin`` of ``value * max_period**(-k/half)``."""
    half = channels // 2
    exponent = np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half)
    freqs = np.exp(exponent.astype(np.float64)).astype(np.float32)  # rounded as torch's exp rounds
    angles = (values.astype(np.float32)[:, None] * freqs[None, :]).astype(np.float64)
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=-1).astype(np.float32)


@functools.lru_cache(maxsize=16)
def rope_tables(grid: tuple[int, int, int], axes_dim: tuple[int, int, int],
                theta: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos, sin [T*H*W, sum(axes_dim)]`` for a ``T x H x W`` token grid (row-major).

    Each axis ``i`` rotates ``axes_dim[i]`` channels of a head by its token's
    coordinate on that axis; each frequency covers an adjacent channel pair.
    """
    coords = np.meshgrid(*[np.arange(size, dtype=np.float32) for size in grid], indexing="ij")
    cos_parts, sin_parts = [], []
    for coord, dim in zip(coords, axes_dim, strict=True):
        freqs = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)))
        angles = np.outer(coord.reshape(-1), freqs)
        cos_parts.append(np.repeat(np.cos(angles), 2, axis=1))
        sin_parts.append(np.repeat(np.sin(angles), 2, axis=1))
    cos = np.concatenate(cos_parts, axis=1).astype(np.float32)
    sin = np.concatenate(sin_parts, axis=1).astype(np.float32)
    cos.flags.writeable = sin.flags.writeable = False
    return cos, sin
