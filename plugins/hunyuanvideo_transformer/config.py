"""Options of the HunyuanVideo transformer (pydantic only, importable without a framework).

Field names and defaults are diffusers' ``HunyuanVideoTransformer3DModel`` config
(the 13B text-to-video model), so the checkpoint's ``config.json`` loads as data.
"""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from plugins.common.options import AdapterConfig, PrecisionConfig


class HunyuanVideoTransformerConfig(PrecisionConfig, AdapterConfig):
    """``num_layers`` dual-stream and ``num_single_layers`` single-stream blocks of
    ``num_attention_heads x attention_head_dim``; ``rope_axes_dim`` splits each head
    between the frame, row and column axes and must sum to ``attention_head_dim``.

    The published 13B checkpoint is bf16 (26 GB): ``weight_dtype=auto`` keeps it so, and
    ``stream_weights=auto`` runs it from the mapped files where it does not fit in memory.
    """

    in_channels: int = Field(16, ge=1)
    out_channels: int = Field(16, ge=1)
    num_attention_heads: int = Field(24, ge=1)
    attention_head_dim: int = Field(128, ge=2)
    num_layers: int = Field(20, ge=0)
    num_single_layers: int = Field(40, ge=0)
    num_refiner_layers: int = Field(2, ge=0)
    mlp_ratio: float = Field(4.0, gt=0)
    patch_size: int = Field(2, ge=1)
    patch_size_t: int = Field(1, ge=1)
    qk_norm: Literal["rms_norm"] = "rms_norm"
    guidance_embeds: bool = True
    text_embed_dim: int = Field(4096, ge=1)
    pooled_projection_dim: int = Field(768, ge=1)
    rope_theta: float = Field(256.0, gt=0)
    rope_axes_dim: tuple[int, int, int] = (16, 56, 56)
    image_condition_type: str | None = None

    @field_validator("image_condition_type")
    @classmethod
    def _text_to_video(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(f"image conditioning ({value!r}) is not supported; this backbone is "
                             f"text-to-video (image_condition_type=None)")
        return value

    @model_validator(mode="after")
    def _shapes(self) -> "HunyuanVideoTransformerConfig":
        if self.out_channels != self.in_channels:
            raise ValueError(f"out_channels ({self.out_channels}) must equal in_channels "
                             f"({self.in_channels}): the velocity has the latents' shape")
        axes = self.rope_axes_dim
        if any(dim < 2 or dim % 2 for dim in axes) or sum(axes) != self.attention_head_dim:
            raise ValueError(f"rope_axes_dim {axes} must be three positive even sizes summing to "
                             f"attention_head_dim ({self.attention_head_dim})")
        return self

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim
