"""Causal 3D convolution and the resampling layers built on it.

A causal convolution pads the past by repeating the first frame (``kernel - 1``
copies) and pads nothing after the last one, so output frame ``t`` reads input
frames ``<= t`` only; height and width are padded symmetrically, also by
replication.
"""

from __future__ import annotations

from mindspore import Tensor, mint, nn, ops


def _triple(value: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (value, value, value) if isinstance(value, int) else tuple(value)


class CausalConv3d(nn.Cell):
    """``conv`` is a plain ``Conv3d`` run on the causally padded input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int | tuple[int, int, int] = 1) -> None:
        super().__init__()
        kt, kh, kw = _triple(kernel_size)
        # ops.pad lists (left, right) pairs from the last dim: width, height, then frames.
        self.padding = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)
        self.needs_padding = any(self.padding)
        self.conv = nn.Conv3d(in_channels, out_channels, (kt, kh, kw), stride=_triple(stride),
                              pad_mode="valid", has_bias=True)

    def construct(self, x: Tensor) -> Tensor:
        if self.needs_padding:
            x = ops.pad(x, self.padding, mode="replicate")
        return self.conv(x)


def _repeat(x: Tensor, factors: tuple[int, ...], first_axis: int) -> Tensor:
    """Nearest-neighbour upsampling by whole factors: each element repeated along each axis."""
    for offset, factor in enumerate(factors):
        if factor > 1:
            x = x.repeat_interleave(factor, first_axis + offset)
    return x


class UpsampleCausal3D(nn.Cell):
    """Nearest upsampling then a causal conv. The first frame is only enlarged in space,
    the others also in time, so ``T`` frames become ``1 + factor_t * (T - 1)``."""

    def __init__(self, channels: int, factor: tuple[int, int, int]) -> None:
        super().__init__()
        self.factor = factor
        self.conv = CausalConv3d(channels, channels, 3)

    def construct(self, x: Tensor) -> Tensor:
        first = _repeat(x[:, :, :1], self.factor[1:], 3)
        if x.shape[2] > 1:
            rest = _repeat(x[:, :, 1:], self.factor, 2)
            first = mint.cat([first, rest], 2)
        return self.conv(first)


class DownsampleCausal3D(nn.Cell):
    """A strided causal conv (stride 2 or 1 per axis, frames first)."""

    def __init__(self, channels: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv(x)
