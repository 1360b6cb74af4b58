"""Tiled encoding and decoding with blended seams, in numpy, one tile in memory at a time.

The tile grid, the blend ramps and the order of blending are diffusers'
(``AutoencoderKLHunyuanVideo.tiled_encode/tiled_decode`` and the temporal
variants), so tiled results equal diffusers' tiled results. Where diffusers keeps
every processed tile until the end, here each tile is blended with the stored
edges of its neighbours and written straight into the output: memory holds the
output, one tile's computation and a strip of edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

TileFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TileSizes:
    """Tile sizes and strides in video pixels and frames (diffusers' ``enable_tiling`` arguments)."""

    tile_sample_min_height: int = 256
    tile_sample_min_width: int = 256
    tile_sample_min_num_frames: int = 16
    tile_sample_stride_height: int = 192
    tile_sample_stride_width: int = 192
    tile_sample_stride_num_frames: int = 12

    def check(self, spatial: int, temporal: int) -> None:
        """Sizes are whole latent units and strides do not exceed sizes (else tiles leave gaps)."""
        for axis, unit in (("height", spatial), ("width", spatial), ("num_frames", temporal)):
            size = getattr(self, f"tile_sample_min_{axis}")
            stride = getattr(self, f"tile_sample_stride_{axis}")
            for name, value in ((f"tile_sample_min_{axis}", size), (f"tile_sample_stride_{axis}", stride)):
                if not isinstance(value, int | np.integer) or value < unit or value % unit:
                    raise ValueError(f"{name}: expected a positive multiple of {unit}, got {value!r}")
            if stride > size:
                raise ValueError(f"tile_sample_stride_{axis}={stride} exceeds tile_sample_min_{axis}={size}; "
                                 f"tiles would leave gaps")


def _tail(tile: np.ndarray, axis: int, extent: int) -> np.ndarray | None:
    """A copy of the last ``extent`` entries along ``axis`` (all of them if fewer)."""
    if extent <= 0:
        return None
    length = tile.shape[axis]
    return np.take(tile, np.arange(max(length - extent, 0), length), axis=axis)


def _blend(previous: np.ndarray | None, tile: np.ndarray, axis: int, extent: int) -> None:
    """Ramp the first entries of ``tile`` along ``axis`` from ``previous``'s end into its own, in place."""
    if previous is None:
        return
    extent = min(previous.shape[axis], tile.shape[axis], extent)
    if extent <= 0:
        return
    ramp = np.arange(extent) / extent
    shape = [1] * tile.ndim
    shape[axis] = extent
    head = [slice(None)] * tile.ndim
    head[axis] = slice(0, extent)
    end = [slice(None)] * tile.ndim
    end[axis] = slice(previous.shape[axis] - extent, None)
    tile[tuple(head)] = (previous[tuple(end)] * (1 - ramp).astype(np.float32).reshape(shape)
                         + tile[tuple(head)] * ramp.astype(np.float32).reshape(shape))


def tiled_spatial(x: np.ndarray, fn: TileFn, tile: tuple[int, int], stride: tuple[int, int],
                  out_stride: tuple[int, int], blend: tuple[int, int],
                  out_size: tuple[int, int]) -> np.ndarray:
    """Run ``fn`` on overlapping ``tile``-sized windows of ``x``'s last two axes, placed every
    ``stride``; each result, blended over ``blend`` entries with the tiles above and to
    its left, contributes its first ``out_stride`` rows and columns to an output of
    ``out_size``."""
    height, width = x.shape[-2:]
    out = None
    above: dict[int, np.ndarray | None] = {}
    for row, top in enumerate(range(0, height, stride[0])):
        left = None
        for col, start in enumerate(range(0, width, stride[1])):
            piece = fn(x[..., top:top + tile[0], start:start + tile[1]])
            if row > 0:
                _blend(above[col], piece, -2, blend[0])
            if col > 0:
                _blend(left, piece, -1, blend[1])
            above[col], left = _tail(piece, -2, blend[0]), _tail(piece, -1, blend[1])
            if out is None:
                out = np.zeros(piece.shape[:-2] + tuple(out_size), np.float32)
            y, x0 = row * out_stride[0], col * out_stride[1]
            kept = piece[..., :min(out_stride[0], max(out_size[0] - y, 0)),
                         :min(out_stride[1], max(out_size[1] - x0, 0))]
            out[..., y:y + kept.shape[-2], x0:x0 + kept.shape[-1]] = kept
    return out


def tiled_temporal(x: np.ndarray, fn: TileFn, tile: int, stride: int, out_stride: int, blend: int,
                   out_frames: int) -> np.ndarray:
    """Run ``fn`` on windows of ``tile + 1`` frames of ``x`` (axis 2) every ``stride`` frames.

    A window after the first starts on the last frame of the previous stride and
    its first output frame is dropped; the rest is blended over ``blend`` frames with
    the previous window's end and contributes ``out_stride`` frames (the first window
    ``out_stride + 1``).
    """
    out = None
    previous = None
    for index, start in enumerate(range(0, x.shape[2], stride)):
        piece = fn(x[:, :, start:start + tile + 1])
        if index > 0:
            piece = piece[:, :, 1:]
            _blend(previous, piece, 2, blend)
        previous = _tail(piece, 2, blend)
        if out is None:
            out = np.zeros(piece.shape[:2] + (out_frames,) + piece.shape[3:], np.float32)
        begin = 0 if index == 0 else index * out_stride + 1
        kept = piece[:, :, :min(out_stride + (1 if index == 0 else 0), max(out_frames - begin, 0))]
        out[:, :, begin:begin + kept.shape[2]] = kept
    return out
