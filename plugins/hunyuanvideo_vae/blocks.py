"""The VAE's blocks: causal resnet, down/up blocks, and the mid block with its attention."""

from __future__ import annotations

from mindspore import Tensor, mint, nn

from plugins.common.layers import Linear, attention
from plugins.hunyuanvideo_vae.conv import CausalConv3d, DownsampleCausal3D, UpsampleCausal3D
from plugins.hunyuanvideo_vae.norm import GroupNorm

EPS = 1e-6


class ResnetBlockCausal3D(nn.Cell):
    """norm, SiLU, causal conv, twice, plus a (1x1x1-projected when widths differ) skip."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = GroupNorm(groups, in_channels, eps=EPS, silu=True)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = GroupNorm(groups, out_channels, eps=EPS, silu=True)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut = (CausalConv3d(in_channels, out_channels, 1)
                              if in_channels != out_channels else None)

    def construct(self, x: Tensor) -> Tensor:
        h = self.conv1(self.norm1(x))
        h = self.conv2(self.norm2(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return h + x


class CausalAttention(nn.Cell):
    """Single-head self-attention over every position of ``[B, C, T, H, W]``, where a
    position sees all positions of its own frame and of earlier frames (diffusers'
    causal mask). Queries are taken one frame at a time against the keys of frames
    up to it, which is the masked attention without building the ``(THW)^2`` mask."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = GroupNorm(groups, channels, eps=EPS)
        self.to_q = Linear(channels, channels)
        self.to_k = Linear(channels, channels)
        self.to_v = Linear(channels, channels)
        self.to_out = nn.CellList([Linear(channels, channels)])

    def construct(self, x: Tensor) -> Tensor:
        batch, channels, frames, height, width = x.shape
        area = height * width
        tokens = self.group_norm(x).permute(0, 2, 3, 4, 1).reshape(batch, 1, frames * area, channels)
        query, key, value = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        out = mint.cat([
            attention(query[:, :, t * area:(t + 1) * area], key[:, :, :(t + 1) * area],
                      value[:, :, :(t + 1) * area])
            for t in range(frames)
        ], 2)
        out = self.to_out[0](out).reshape(batch, frames, height, width, channels)
        return out.permute(0, 4, 1, 2, 3) + x


class MidBlock3D(nn.Cell):
    """resnet, then (attention, resnet) once."""

    def __init__(self, channels: int, groups: int, add_attention: bool) -> None:
        super().__init__()
        self.attentions = nn.CellList([CausalAttention(channels, groups)] if add_attention else [])
        self.resnets = nn.CellList([ResnetBlockCausal3D(channels, channels, groups) for _ in range(2)])

    def construct(self, x: Tensor) -> Tensor:
        x = self.resnets[0](x)
        for attn in self.attentions:
            x = attn(x)
        return self.resnets[1](x)


class DownBlock3D(nn.Cell):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int,
                 stride: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlockCausal3D(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_layers)
        ])
        self.downsamplers = nn.CellList([DownsampleCausal3D(out_channels, stride)]) if stride else None

    def construct(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpBlock3D(nn.Cell):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int,
                 factor: tuple[int, int, int] | None) -> None:
        super().__init__()
        self.resnets = nn.CellList([
            ResnetBlockCausal3D(in_channels if i == 0 else out_channels, out_channels, groups)
            for i in range(num_layers)
        ])
        self.upsamplers = nn.CellList([UpsampleCausal3D(out_channels, factor)]) if factor else None

    def construct(self, x: Tensor) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x
