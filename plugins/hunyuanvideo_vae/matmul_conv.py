"""3D convolution with replicate padding as matrix products, and nearest upsampling folded
into the convolution that follows it.

Why: MindSpore's CPU convolution kernels run at about 1 GFLOP/s, its fp32 ``MatMul`` at
150-200. A convolution here is one 2D ``MatMul`` per slab of the output, with the
kernel's taps split between the two operands:

- space on the input side (im2col): the ``kh*kw`` shifted windows of each padded frame
  are laid side by side, channels last, as columns ``[positions, kh*kw*Cin]``;
- time on the output side: the product with the weight's ``kt`` temporal slices stacked
  as ``[kt*Cout, kh*kw*Cin]`` gives each frame's contribution to every output frame that
  reads it, and an output frame is the sum of the ``kt`` contributions of its frames.

So each frame's columns are built once although ``kt`` output frames read them, the
column buffer is ``kh*kw`` (not ``kt*kh*kw``) times the input, and frames that are
copies of a stored frame (the causal padding's copies of frame 0, or the repeats of
nearest upsampling in time) are never computed: the stored frame's contributions serve
them. Nearest upsampling in space is folded into the convolution as well: output rows
``2i`` and ``2i + 1`` read only rows ``i - 1, i`` and ``i, i + 1`` of the input, so each
of the four (row, column) phases is a 2x2 convolution of the small input with summed
weights, 2.25x fewer products than a 3x3 one over the enlarged input, which is never
built.

The layout work runs in numpy on all cores (``cores``); the arithmetic is MindSpore's
``MatMul``; memory is shared between the two, never copied. Slabs of the output (bands
of rows across all frames; for huge frames, groups of frames one row at a time) keep the
columns and products within ``SLAB_BYTES``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

from plugins.hunyuanvideo_vae.cores import parallel

SLAB_BYTES = 256 * 2**20  # columns and products of one slab, float32
_BLOCK = 512  # output positions summed and transposed at a time (they stay in cache)
_WEIGHT_CHUNK = 16  # output channels whose weights are rearranged at a time
Triple = tuple[int, int, int]
Pair = tuple[int, int]

_MATMUL = ops.MatMul(transpose_b=True)


@dataclass(frozen=True)
class Geometry:
    """How a convolution reads its input.

    ``kernel`` and ``stride`` are (frames, rows, columns). Replicate padding:
    ``frames_before`` copies of the first frame (none after the last), ``rows`` (above,
    below) and ``columns`` (left, right). The input's frames are the stored ones with every
    frame after the first repeated ``frame_repeat`` times (nearest upsampling in time,
    never materialised).
    """

    kernel: Triple
    stride: Triple = (1, 1, 1)
    frames_before: int = 0
    rows: Pair = (0, 0)
    columns: Pair = (0, 0)
    frame_repeat: int = 1

    @classmethod
    def causal(cls, kernel: Triple, stride: Triple = (1, 1, 1)) -> Geometry:
        """``kernel - 1`` copies of the first frame before it, ``kernel // 2`` rows and columns on each side."""
        kt, kh, kw = kernel
        return cls(kernel, stride, kt - 1, (kh // 2, kh // 2), (kw // 2, kw // 2))

    def output_size(self, frames: int, height: int, width: int) -> Triple:
        (kt, kh, kw), (st, sh, sw) = self.kernel, self.stride
        frames = 1 + self.frame_repeat * (frames - 1)
        size = ((frames + self.frames_before - kt) // st + 1, (height + sum(self.rows) - kh) // sh + 1,
                (width + sum(self.columns) - kw) // sw + 1)
        if min(size) < 1:
            raise ValueError(f"a {frames}x{height}x{width} input is smaller than the kernel {self.kernel} "
                             f"with its padding")
        return size

    def source_frame(self, output_frame: int, tap: int) -> int:
        """The stored frame that temporal ``tap`` of ``output_frame`` reads."""
        frame = max(output_frame * self.stride[0] + tap - self.frames_before, 0)
        return -(-frame // self.frame_repeat)  # frame 0 once, then each frame frame_repeat times


@dataclass(frozen=True)
class Slab:
    """Output frames ``frames`` and output rows ``rows`` computed together."""

    frames: slice
    rows: slice


def slabs(geometry: Geometry, output: Triple, in_channels: int, out_channels: int,
          budget: int = SLAB_BYTES) -> Iterator[Slab]:
    """Slabs covering the output, each with at most ``budget`` bytes of columns and products
    (or a single output row of a single frame, if that alone exceeds it).

    A slab spans every output frame and a band of rows, so each stored frame's columns are
    built once; only when one row of every frame does not fit are frames taken in groups,
    whose columns and products at the group's edges are then computed in both groups.
    """
    frames, rows, width = output
    (kt, kh, kw), st = geometry.kernel, geometry.stride[0]
    per_position = 4 * (kh * kw * in_channels + kt * out_channels)
    positions = max(budget // per_position, 1)
    read = geometry.source_frame(frames - 1, kt - 1) - geometry.source_frame(0, 0) + 1
    band = positions // (read * width)
    if band >= 1:
        for start in range(0, rows, band):
            yield Slab(slice(0, frames), slice(start, min(start + band, rows)))
        return
    count = max((positions // width - kt) // st + 1, 1)  # n output frames read at most (n - 1) * st + kt
    for first in range(0, frames, count):
        for row in range(rows):
            yield Slab(slice(first, min(first + count, frames)), slice(row, row + 1))


class _Scratch(threading.local):
    """Buffers for the weight, padded frames and columns, reused from one convolution to the next.

    A fresh buffer above glibc's mmap threshold (32 MB) is new pages every time, and the
    kernel's page faults and zeroing cost as much as filling it. A buffer is reused only
    once the product that read it has returned (ops run synchronously on CPU), and
    ``release_scratch`` drops them all, which the VAE does after each encode and decode.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def take(self, role: str, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        buffer = self.buffers.get(role)
        if buffer is None or buffer.size < size:
            self.buffers.pop(role, None)
            buffer = self.buffers[role] = np.empty(size, np.float32)
        return buffer[:size].reshape(shape)


_SCRATCH = _Scratch()


def release_scratch() -> None:
    """Give back the convolutions' reusable buffers (this thread's)."""
    _SCRATCH.buffers.clear()


def stacked_weight(weight: np.ndarray, row_groups: list[list[int]] | None = None,
                   column_groups: list[list[int]] | None = None) -> np.ndarray:
    """``[Cout, Cin, kt, kh, kw]`` as ``[kt*Cout, kh*kw*Cin]``: one row per (temporal tap, output
    channel), its columns in the order of the columns ``columns`` builds.

    With ``row_groups`` and ``column_groups`` (lists of taps), the taps of each group are
    summed into one (an upsampling phase's kernel, see ``upsampling_phases``). A few output
    channels at a time, so the taps of those channels stay in cache while they are
    gathered and summed."""
    out_channels, in_channels, kt, kh, kw = weight.shape
    row_groups = row_groups or [[i] for i in range(kh)]
    column_groups = column_groups or [[j] for j in range(kw)]
    out = _SCRATCH.take("weight", (kt, out_channels, len(row_groups), len(column_groups), in_channels))
    plain = len(row_groups) == kh and len(column_groups) == kw

    def copy(part: slice) -> None:
        for start in range(part.start, part.stop, _WEIGHT_CHUNK):
            chunk = slice(start, min(start + _WEIGHT_CHUNK, part.stop))
            source, target = weight[chunk].transpose(2, 0, 3, 4, 1), out[:, chunk]
            if plain:
                target[...] = source
                continue
            for i, rows in enumerate(row_groups):
                for j, cols in enumerate(column_groups):
                    (first, *rest) = [(row, col) for row in rows for col in cols]
                    np.copyto(target[:, :, i, j], source[:, :, first[0], first[1]])
                    for row, col in rest:
                        target[:, :, i, j] += source[:, :, row, col]

    parallel(out_channels, copy)
    return out.reshape(kt * out_channels, -1)


def padded_frames(video: np.ndarray, frames: slice, rows: slice, geometry: Geometry) -> np.ndarray:
    """Stored frames ``frames`` of ``video [Cin, T, H, W]``, channels last, with padded rows
    ``rows`` (padded row ``r`` is row ``r - above`` clamped into the frame) and every padded
    column: ``[frames, rows, left + W + right, Cin]``."""
    (above, _), (left, right) = geometry.rows, geometry.columns
    height, width = video.shape[2:]
    top, bottom = rows.start - above, rows.stop - above  # input rows, before clamping
    inner = slice(max(top, 0), min(bottom, height))
    section = video[:, frames, inner].transpose(1, 2, 3, 0)
    count, lines = section.shape[:2]
    out = _SCRATCH.take("frames", (count, bottom - top, left + width + right, video.shape[0]))
    first = inner.start - top

    def fill(part: slice) -> None:
        body = out[part, first:first + lines]
        body[:, :, left:left + width] = section[part]
        body[:, :, :left] = body[:, :, left:left + 1]
        body[:, :, left + width:] = body[:, :, left + width - 1:left + width]
        out[part, :first] = body[:, :1]
        out[part, first + lines:] = body[:, -1:]

    parallel(count, fill)
    return out


def columns(frames: np.ndarray, geometry: Geometry, rows: int, width: int) -> np.ndarray:
    """im2col over space: ``frames [F, padded rows, padded columns, Cin]`` to
    ``[F*rows*width, kh*kw*Cin]``, the ``kh*kw`` (strided) windows side by side."""
    (_, kh, kw), (_, sh, sw) = geometry.kernel, geometry.stride
    count, channels = frames.shape[0], frames.shape[-1]
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return np.ascontiguousarray(frames[:, :rows, :width]).reshape(count * rows * width, channels)
    out = _SCRATCH.take("columns", (count, rows, width, kh * kw, channels))

    def copy(part: slice) -> None:
        for tap, (i, j) in enumerate((i, j) for i in range(kh) for j in range(kw)):
            top = i + sh * part.start
            out[:, part, :, tap] = frames[:, top:top + sh * (part.stop - part.start - 1) + 1:sh,
                                          j:j + sw * (width - 1) + 1:sw]

    parallel(rows, copy)
    return out.reshape(count * rows * width, kh * kw * channels)


def matmul(columns: np.ndarray, weight: Tensor) -> np.ndarray:
    """``columns [N, K] @ weight [M, K]^T`` as one 2D MindSpore ``MatMul`` (memory shared both ways)."""
    return _MATMUL(ms.from_numpy(columns), weight).asnumpy()


def _sum_taps(products: np.ndarray, first: int, outputs: range, geometry: Geometry, bias: np.ndarray,
              out: np.ndarray) -> None:
    """``out [Cout, output frames, rows, width]`` = per output frame, the sum over temporal taps
    of the products ``[frames, rows*width, kt, Cout]`` of the stored frame each tap reads (the
    first is ``first``), plus ``bias``; a few rows at a time, which stay in cache while they
    are transposed."""
    kt = geometry.kernel[0]
    rows, width = out.shape[2:]
    band = max(_BLOCK // width, 1)
    blocks = [(index, start) for index in range(len(outputs)) for start in range(0, rows, band)]

    def add(part: slice) -> None:
        for index, start in blocks[part]:
            stop = min(start + band, rows)
            frame, span = outputs[index], slice(start * width, stop * width)
            total = products[geometry.source_frame(frame, 0) - first, span, 0]
            if kt > 1:
                total = total + products[geometry.source_frame(frame, 1) - first, span, 1]
                for tap in range(2, kt):
                    total += products[geometry.source_frame(frame, tap) - first, span, tap]
            np.add(total.T.reshape(-1, stop - start, width), bias[:, None, None], out=out[:, index, start:stop])

    parallel(len(blocks), add)


def _slab(video: np.ndarray, weight: Tensor, bias: np.ndarray, geometry: Geometry, slab: Slab,
          out: np.ndarray) -> None:
    """One slab of the convolution of ``video [Cin, T, H, W]`` into ``out [Cout, T', H', W']``."""
    (kt, kh, _), sh = geometry.kernel, geometry.stride[1]
    outputs = range(slab.frames.start, slab.frames.stop)
    first = geometry.source_frame(outputs[0], 0)
    last = geometry.source_frame(outputs[-1], kt - 1)
    rows, width = slab.rows.stop - slab.rows.start, out.shape[-1]
    padded_rows = slice(slab.rows.start * sh, slab.rows.start * sh + sh * (rows - 1) + kh)
    frames = padded_frames(video, slice(first, last + 1), padded_rows, geometry)
    products = matmul(columns(frames, geometry, rows, width), weight)
    products = products.reshape(last + 1 - first, rows * width, kt, -1)
    _sum_taps(products, first, outputs, geometry, bias, out[:, slab.frames, slab.rows])


def _convolve(video: np.ndarray, stacked: np.ndarray, bias: np.ndarray, geometry: Geometry, budget: int,
              out: np.ndarray) -> np.ndarray:
    """``video [B, Cin, T, H, W]`` with the ``stacked_weight`` ``stacked``, into ``out``."""
    batch, in_channels, frames, height, width = video.shape
    size = geometry.output_size(frames, height, width)
    weight = ms.from_numpy(stacked)
    for item in range(batch):
        for slab in slabs(geometry, size, in_channels, out.shape[1], budget):
            _slab(video[item], weight, bias, geometry, slab, out[item])
    return out


def conv3d(video: np.ndarray, weight: np.ndarray, bias: np.ndarray, geometry: Geometry,
           budget: int = SLAB_BYTES) -> np.ndarray:
    """``video [B, Cin, T, H, W]`` convolved with ``weight [Cout, Cin, kt, kh, kw]`` plus ``bias``,
    padded, strided and upsampled in time as ``geometry`` says: ``[B, Cout, T', H', W']``."""
    size = geometry.output_size(*video.shape[2:])
    out = np.empty((video.shape[0], weight.shape[0], *size), np.float32)
    return _convolve(video, stacked_weight(weight), bias, geometry, budget, out)


def upsampling_phases(size: int, factor: int) -> list[tuple[list[list[int]], Pair]]:
    """Along one axis, nearest upsampling by ``factor`` then ``size`` taps padded by ``size // 2``
    on each side: for each output phase ``p`` (outputs ``factor*i + p``), the taps grouped by
    the input ``i + offset`` they read, in order of offset, and the padding (before, after)
    of the input that those offsets need."""
    phases = []
    for phase in range(factor):
        offsets = [(phase + tap - size // 2) // factor for tap in range(size)]
        low, high = min(offsets), max(offsets)
        phases.append(([[tap for tap in range(size) if offsets[tap] == offset] for offset in range(low, high + 1)],
                       (-low, high)))
    return phases


def upsampled_conv3d(video: np.ndarray, weight: np.ndarray, bias: np.ndarray, factor: Triple,
                     budget: int = SLAB_BYTES) -> np.ndarray:
    """The causal convolution of ``video [B, Cin, T, H, W]`` upsampled by ``factor`` (nearest; the
    first frame only in space, so ``T`` frames become ``1 + factor[0] * (T - 1)``), without
    building the upsampled video: ``[B, Cout, T', factor[1]*H, factor[2]*W]``, phase by phase."""
    batch, _, frames, height, width = video.shape
    kt, kh, kw = weight.shape[2:]
    ft, fh, fw = factor
    size = Geometry.causal((kt, kh, kw)).output_size(1 + ft * (frames - 1), height, width)
    out = np.empty((batch, weight.shape[0], size[0], fh * height, fw * width), np.float32)
    for py, (row_groups, rows) in enumerate(upsampling_phases(kh, fh)):
        for px, (column_groups, columns_) in enumerate(upsampling_phases(kw, fw)):
            geometry = Geometry((kt, len(row_groups), len(column_groups)), (1, 1, 1), kt - 1, rows, columns_, ft)
            _convolve(video, stacked_weight(weight, row_groups, column_groups), bias, geometry, budget,
                      out[:, :, :, py::fh, px::fw])
    return out
