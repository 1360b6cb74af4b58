"""Options of the HunyuanVideo transformer (pydantic only, importable without a framework).

Field names and defaults are diffusers' ``HunyuanVideoTransformer3DModel`` config
(the 13B text-to-video model), so the checkpoint's ``config.json`` loads as data.
"""

from typing import Literal

from pydantic import Field, model_validator

from plugins.common.options import AdapterConfig, ComputeDtype, PrecisionConfig


class HunyuanVideoTransformerConfig(PrecisionConfig, AdapterConfig):
    """``num_layers`` dual-stream and ``num_single_layers`` single-stream blocks of
    ``num_attention_heads x attention_head_dim``; ``rope_axes_dim`` splits each head
    between the frame, row and column axes and must sum to ``attention_head_dim``.

    The published 13B checkpoint is bf16 (26 GB): ``weight_dtype=auto`` keeps it so, and
    ``stream_weights=auto`` runs it from the mapped files where it does not fit in memory.
    ``compute_dtype="int8"`` computes its linear layers in int8 on a CPU with AMX-INT8 (weights
    quantized per output when first used, held as int8 from then on; activations per token):
    about twice bf16's speed on those layers, further from float32 than bf16 (see ``int8``).

    Image-to-video variants: ``image_condition_type="latent_concat"`` (HunyuanVideo-I2V, 33
    channels: latents, image latents and a first-frame mask), ``"token_replace"``
    (HunyuanVideo-I2V, 16 channels: the first latent frame is the image's, modulated as at
    timestep 0), and SkyReels-V1's concat without a mask (``image_condition_type=None``,
    ``in_channels = 2 * out_channels``).
    """

    compute_dtype: ComputeDtype = Field(
        "auto", description="computed in: auto = bfloat16 for bf16 weights where the CPU has bf16 matmuls, else "
                            "float32 on CPU; bfloat16 elsewhere; int8 = int8 linear layers on a CPU with AMX-INT8")
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
    image_condition_type: Literal["latent_concat", "token_replace"] | None = None

    @model_validator(mode="after")
    def _shapes(self) -> "HunyuanVideoTransformerConfig":
        extra = self.in_channels - self.out_channels
        allowed = {None: (0, self.out_channels), "latent_concat": (self.out_channels + 1,),
                   "token_replace": (0,)}[self.image_condition_type]
        if extra not in allowed:
            wanted = " or ".join(str(self.out_channels + n) for n in allowed)
            raise ValueError(f"in_channels ({self.in_channels}) must be {wanted} for out_channels "
                             f"{self.out_channels} and image_condition_type={self.image_condition_type!r}")
        axes = self.rope_axes_dim
        if any(dim < 2 or dim % 2 for dim in axes) or sum(axes) != self.attention_head_dim:
            raise ValueError(f"rope_axes_dim {axes} must be three positive even sizes summing to "
                             f"attention_head_dim ({self.attention_head_dim})")
        return self

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @property
    def image_conditioning(self) -> str:
        """The conditioning this backbone accepts (one of ``contracts.IMAGE_CONDITIONING``)."""
        if self.image_condition_type is not None:
            return self.image_condition_type
        return "latent_concat" if self.in_channels != self.out_channels else "none"

    @property
    def condition_channels(self) -> int:
        """Channels the backbone reads beyond the latents: the image latents, and the mask."""
        return self.in_channels - self.out_channels
