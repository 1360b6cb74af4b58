"""Options of the HunyuanVideo causal 3D VAE (numpy-free, importable without a framework).

Field names and defaults are those of diffusers' ``AutoencoderKLHunyuanVideo``
``config.json``, so a checkpoint's config loads as data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from plugins.common.options import PrecisionConfig

TILING_ARGUMENTS = ("tile_sample_min_height", "tile_sample_min_width", "tile_sample_min_num_frames",
                    "tile_sample_stride_height", "tile_sample_stride_width", "tile_sample_stride_num_frames")
DOWN_BLOCK = "HunyuanVideoDownBlock3D"
UP_BLOCK = "HunyuanVideoUpBlock3D"


class HunyuanVideoVAEConfig(PrecisionConfig):
    """The autoencoder's architecture.

    The encoder halves the size in its first ``log2(spatial_compression_ratio)`` down
    blocks and the frame count in the two blocks before the last, so the block count
    must be at least ``log2(spatial_compression_ratio)`` and at least 3 for the
    declared compression to be the real one.
    """

    in_channels: Literal[3] = 3
    out_channels: Literal[3] = 3
    latent_channels: int = Field(16, ge=1)
    down_block_types: tuple[Literal["HunyuanVideoDownBlock3D"], ...] = (DOWN_BLOCK,) * 4
    up_block_types: tuple[Literal["HunyuanVideoUpBlock3D"], ...] = (UP_BLOCK,) * 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = Field(2, ge=1)
    act_fn: Literal["silu", "swish"] = "silu"
    norm_num_groups: int = Field(32, ge=1)
    scaling_factor: float = 0.476986
    spatial_compression_ratio: Literal[2, 4, 8, 16, 32] = 8
    temporal_compression_ratio: Literal[4] = 4
    mid_block_add_attention: bool = True
    # Ours, not diffusers': switched on at build time, so a spec can ask for a tiled or sliced VAE.
    tiling: dict[str, int] | None = Field(
        None, description="enable_tiling() at build, with these of its arguments ({} for its defaults)")
    slicing: bool = Field(False, description="enable_slicing() at build: decode a batch one video at a time")

    @field_validator("tiling")
    @classmethod
    def _tiling_arguments(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        unknown = sorted(set(value or {}) - set(TILING_ARGUMENTS))
        if unknown:
            raise ValueError(f"unknown tiling argument(s) {unknown}; enable_tiling takes {', '.join(TILING_ARGUMENTS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HunyuanVideoVAEConfig:
        blocks = len(self.block_out_channels)
        if len(self.down_block_types) != blocks or len(self.up_block_types) != blocks:
            raise ValueError(
                f"down_block_types ({len(self.down_block_types)}), up_block_types "
                f"({len(self.up_block_types)}) and block_out_channels ({blocks}) must have one entry "
                f"per block"
            )
        spatial_layers = self.spatial_compression_ratio.bit_length() - 1
        temporal_layers = self.temporal_compression_ratio.bit_length() - 1
        if blocks < max(spatial_layers, temporal_layers + 1):
            raise ValueError(
                f"block_out_channels: {blocks} blocks cannot give {self.spatial_compression_ratio}x "
                f"spatial and {self.temporal_compression_ratio}x temporal compression; "
                f"need at least {max(spatial_layers, temporal_layers + 1)}"
            )
        bad = [c for c in self.block_out_channels if c < 1 or c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels: every width must be a positive multiple of "
                             f"norm_num_groups={self.norm_num_groups}, got {list(self.block_out_channels)}")
        return self

    @property
    def spatial_compression(self) -> int:
        return self.spatial_compression_ratio

    @property
    def temporal_compression(self) -> int:
        return self.temporal_compression_ratio

    @property
    def causal(self) -> bool:
        """The causal frame layout: the first frame is compressed alone, then 4 frames per
        latent frame, and no convolution or attention looks at a later frame.

        As in diffusers (and the original model), the group norms pool their statistics
        over all frames, so the latents of a video's first ``4k+1`` frames are not the
        first ``k+1`` latents of the whole video: later frames reach earlier latents
        through those statistics.
        """
        return True
