"""The VAE's convolution layers: plain, causal, upsampling and downsampling.

A causal convolution pads the past by repeating the first frame (``kernel - 1``
copies) and pads nothing after the last one, so output frame ``t`` reads input
frames ``<= t`` only; height and width are padded symmetrically, also by
replication. All of them run as matrix products (``matmul_conv``).
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import Parameter, Tensor, nn
from mindspore.common.initializer import HeUniform, Uniform, initializer

from plugins.common.precision import computable
from plugins.hunyuanvideo_vae.matmul_conv import SLAB_BYTES, Geometry, Triple, conv3d, upsampled_conv3d


def _triple(value: int | tuple[int, ...]) -> Triple:
    return (value, value, value) if isinstance(value, int) else tuple(value)


class Conv3d(nn.Cell):
    """A 3D convolution, unpadded, or with causal replicate padding if ``causal``.

    ``weight [Cout, Cin, kt, kh, kw]`` and ``bias [Cout]`` have PyTorch's names, shapes and
    default initialisation, so a checkpoint loads by name; they are read through
    ``computable``, which widens weights held at a lower precision just before use.
    ``slab_bytes`` bounds the columns and products computed at once.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Triple,
                 stride: int | Triple = 1, causal: bool = False) -> None:
        super().__init__()
        kernel, stride = _triple(kernel_size), _triple(stride)
        self.geometry = Geometry.causal(kernel, stride) if causal else Geometry(kernel, stride)
        shape = (out_channels, in_channels, *kernel)
        bound = 1 / math.sqrt(math.prod(shape[1:]))
        self.weight = Parameter(initializer(HeUniform(math.sqrt(5)), shape, ms.float32), name="weight")
        self.bias = Parameter(initializer(Uniform(bound), (out_channels,), ms.float32), name="bias")
        self.slab_bytes = SLAB_BYTES

    def construct(self, x: Tensor) -> Tensor:
        weight, bias = computable(self.weight).asnumpy(), computable(self.bias).asnumpy()
        return ms.from_numpy(conv3d(x.asnumpy(), weight, bias, self.geometry, self.slab_bytes))


class CausalConv3d(nn.Cell):
    """``conv`` on the causally padded input (diffusers' ``HunyuanVideoCausalConv3d``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Triple = 3,
                 stride: int | Triple = 1) -> None:
        super().__init__()
        self.conv = Conv3d(in_channels, out_channels, kernel_size, stride, causal=True)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv(x)


class UpsampleCausal3D(nn.Cell):
    """Nearest upsampling then a causal conv. The first frame is only enlarged in space,
    the others also in time, so ``T`` frames become ``1 + factor_t * (T - 1)``; the enlarged
    video is never built (``upsampled_conv3d``)."""

    def __init__(self, channels: int, factor: Triple) -> None:
        super().__init__()
        self.factor = factor
        self.conv = CausalConv3d(channels, channels, 3)

    def construct(self, x: Tensor) -> Tensor:
        conv = self.conv.conv
        weight, bias = computable(conv.weight).asnumpy(), computable(conv.bias).asnumpy()
        return ms.from_numpy(upsampled_conv3d(x.asnumpy(), weight, bias, self.factor, conv.slab_bytes))


class DownsampleCausal3D(nn.Cell):
    """A strided causal conv (stride 2 or 1 per axis, frames first)."""

    def __init__(self, channels: int, stride: Triple) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride)

    def construct(self, x: Tensor) -> Tensor:
        return self.conv(x)
