"""The causal encoder and decoder stacks."""

from __future__ import annotations

from mindspore import Tensor, nn

from plugins.hunyuanvideo_vae.blocks import EPS, DownBlock3D, MidBlock3D, UpBlock3D
from plugins.hunyuanvideo_vae.config import HunyuanVideoVAEConfig
from plugins.hunyuanvideo_vae.conv import CausalConv3d
from plugins.hunyuanvideo_vae.norm import GroupNorm


def resampling(config: HunyuanVideoVAEConfig, index: int) -> tuple[int, int, int] | None:
    """The (frames, height, width) factor block ``index`` resamples by, or None.

    Space is resampled in the first ``log2(spatial ratio)`` blocks, time in the
    ``log2(temporal ratio)`` blocks before the last; the decoder mirrors the encoder.
    """
    blocks = len(config.block_out_channels)
    spatial_layers = config.spatial_compression_ratio.bit_length() - 1
    temporal_layers = config.temporal_compression_ratio.bit_length() - 1
    spatial = 2 if index < spatial_layers else 1
    temporal = 2 if blocks - 1 - temporal_layers <= index < blocks - 1 else 1
    return (temporal, spatial, spatial) if spatial * temporal > 1 else None


class Encoder3D(nn.Cell):
    """Video ``[B, 3, F, H, W]`` to the posterior's mean and log-variance ``[B, 2C, T, h, w]``."""

    def __init__(self, config: HunyuanVideoVAEConfig) -> None:
        super().__init__()
        widths, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = CausalConv3d(config.in_channels, widths[0], 3)
        self.down_blocks = nn.CellList([
            DownBlock3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block, groups,
                        resampling(config, i))
            for i in range(len(widths))
        ])
        self.mid_block = MidBlock3D(widths[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = GroupNorm(groups, widths[-1], eps=EPS, silu=True)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, 3)

    def construct(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(self.conv_norm_out(x))


class Decoder3D(nn.Cell):
    """Latents ``[B, C, T, h, w]`` to video ``[B, 3, F, H, W]``."""

    def __init__(self, config: HunyuanVideoVAEConfig) -> None:
        super().__init__()
        widths, groups = config.block_out_channels[::-1], config.norm_num_groups
        self.conv_in = CausalConv3d(config.latent_channels, widths[0], 3)
        self.mid_block = MidBlock3D(widths[0], groups, config.mid_block_add_attention)
        self.up_blocks = nn.CellList([
            UpBlock3D(widths[max(i - 1, 0)], widths[i], config.layers_per_block + 1, groups,
                      resampling(config, i))
            for i in range(len(widths))
        ])
        self.conv_norm_out = GroupNorm(groups, widths[-1], eps=EPS, silu=True)
        self.conv_out = CausalConv3d(widths[-1], config.out_channels, 3)

    def construct(self, x: Tensor) -> Tensor:
        x = self.mid_block(self.conv_in(x))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(self.conv_norm_out(x))
