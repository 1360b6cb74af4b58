"""The ``hunyuanvideo-transformer`` backbone component: numpy at the boundary,
``HunyuanVideoTransformer3D`` inside.

Text padding is positional: a token whose ``attention_mask`` is False is never
attended to, so its embedding cannot change the output. Diffusers agrees for
right-padded masks (what the text encoder produces); it masks by count in the joint
attention, and lets every refiner query see token 0. Text positions that are padding
in every batch item are dropped before the network runs, which changes nothing
but the work.
"""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore.nn.utils import no_init_parameters

from contracts import ContractError, TextEmbeddings, check_batch_vector, check_image_latents, check_latents
from plugins.common.lora import Adapters
from plugins.common.runtime import apply_matmul_precision, compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D
from plugins.hunyuanvideo_transformer.tables import rope_tables, timestep_sinusoids

# The model embeds guidance as ``1000 * scale``, as diffusers' pipeline passes it.
GUIDANCE_MULTIPLIER = np.float32(1000.0)


class HunyuanVideoTransformer:
    """``backbone(latents, timestep, text, guidance=None, image=None) -> velocity`` of the latents'
    shape; ``image``, the conditioning image's latents ``[B, C, 1, h, w]``, for an image-to-video
    variant (see ``HunyuanVideoTransformerConfig``)."""

    def __init__(self, config: HunyuanVideoTransformerConfig, weights: Path | None = None) -> None:
        dispatch_synchronously_on_cpu()
        self.config = config
        self.dtype = compute_dtype(config.compute_dtype)
        if weights is None:
            self.network = HunyuanVideoTransformer3D(config)
        else:  # no random initial values: the checkpoint replaces them all
            with no_init_parameters():
                self.network = HunyuanVideoTransformer3D(config)
        self.network.set_train(False)
        self.streamed = weights is not None and load_weights(
            self.network, weights, "HunyuanVideo transformer", config.weight_dtype, config.stream_weights)
        self.adapters = Adapters(self.network)
        for lora in config.loras:
            self.adapters.load(lora.path, lora.strength, lora.name)
        apply_matmul_precision(config.compute_dtype, self.network, "hunyuanvideo-transformer", float32_on_onednn=True)
        self._rope: tuple[tuple[int, ...], ms.Tensor, ms.Tensor] | None = None

    def __call__(self, latents: np.ndarray, timestep: np.ndarray, text: TextEmbeddings,
                 guidance: np.ndarray | None = None, image: np.ndarray | None = None) -> np.ndarray:
        cfg = self.config
        latents = self._check_latents(latents)
        latents, zero_sin, replaced = self._condition(latents, image)
        batch = latents.shape[0]
        hidden, mask, pooled = self._check_text(text, batch)
        timestep_sin = self._tensor(timestep_sinusoids(check_batch_vector(timestep, batch, "timestep")))
        guidance_sin = None
        if cfg.guidance_embeds:
            if guidance is None:
                raise ContractError("guidance: this model is guidance-distilled (guidance_embeds=True); "
                                    "expected the guidance scale, a scalar or [B] (e.g. 6.0)")
            scale = check_batch_vector(guidance, batch, "guidance") * GUIDANCE_MULTIPLIER
            guidance_sin = self._tensor(timestep_sinusoids(scale))

        keep = mask.any(axis=0)
        if not keep.all():
            hidden, mask = hidden[:, keep], mask[:, keep]
        patches, grid = self._patchify(latents)
        cos, sin = self._rope_tables(grid, hidden.shape[1])
        text_mask = joint_mask = None
        if not mask.all():
            text_mask = ms.Tensor(mask[:, None, None, :])
            video = np.ones((batch, patches.shape[1]), dtype=bool)
            joint_mask = ms.Tensor(np.concatenate([video, mask], axis=1)[:, None, None, :])
        real = self._tensor(mask[:, :, None].astype(np.float32))
        extra = () if zero_sin is None else (zero_sin, replaced)
        out = self.network(self._tensor(patches), timestep_sin, guidance_sin, self._tensor(hidden), real,
                           self._tensor(pooled), cos, sin, text_mask, joint_mask, *extra)
        return self._unpatchify(out.float().asnumpy(), grid)

    def _condition(self, latents: np.ndarray, image: object) -> tuple[np.ndarray, ms.Tensor | None, int]:
        """The network's input with the image's latents in place: extra channels (the image on the
        first frame, zeros after, and a first-frame mask when the model has one) or the first
        frame itself; for token replacement also the timestep-0 sinusoid and the first frame's
        token count."""
        cfg = self.config
        kind = cfg.image_conditioning
        if kind == "none":
            if image is not None:
                raise ContractError("image: this backbone is text-to-video (image_conditioning='none') "
                                    "and takes no conditioning image")
            return latents, None, 0
        if image is None:
            raise ContractError(f"image: this backbone is image-to-video (image_conditioning={kind!r}); "
                                f"expected the image's latents [B, C, 1, h, w]")
        image = check_image_latents(image, latents)
        if kind == "token_replace":
            replaced = (latents.shape[3] // cfg.patch_size) * (latents.shape[4] // cfg.patch_size)
            zero_sin = self._tensor(timestep_sinusoids(np.zeros(latents.shape[0], np.float32)))
            return np.concatenate([image, latents[:, :, 1:]], axis=2), zero_sin, replaced
        batch, _, frames, height, width = latents.shape
        condition = np.zeros_like(latents)
        condition[:, :, :1] = image
        parts = [latents, condition]
        if cfg.condition_channels == latents.shape[1] + 1:
            mask = np.zeros((batch, 1, frames, height, width), np.float32)
            mask[:, :, 0] = 1
            parts.append(mask)
        return np.concatenate(parts, axis=1), None, 0

    def load_lora(self, path: str | Path, strength: float = 1.0, name: str | None = None) -> str:
        """Add a LoRA adapter, applied on the fly at ``strength``; its name (see ``lora.Adapters``
        for changing its strength, removing it, merging and unmerging)."""
        return self.adapters.load(path, strength, name)

    def _tensor(self, array: np.ndarray) -> ms.Tensor:
        return ms.Tensor(array, dtype=self.dtype)

    def _check_latents(self, latents: object) -> np.ndarray:
        cfg = self.config
        latents = check_latents(latents, cfg.out_channels)
        _, _, frames, height, width = latents.shape
        if frames % cfg.patch_size_t or height % cfg.patch_size or width % cfg.patch_size:
            raise ContractError(
                f"latents: expected T divisible by patch_size_t={cfg.patch_size_t} and h, w divisible "
                f"by patch_size={cfg.patch_size} in [B, C, T, h, w], got shape {tuple(latents.shape)}")
        return latents

    def _check_text(self, text: object, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cfg = self.config
        if not isinstance(text, TextEmbeddings):
            raise ContractError(f"text: expected TextEmbeddings, got {type(text).__name__}")
        hidden, mask, pooled = text.hidden_states, text.attention_mask, text.pooled
        if hidden.shape[0] != batch:
            raise ContractError(f"text: expected batch {batch} to match the latents, "
                                f"got hidden_states of shape {tuple(hidden.shape)}")
        if hidden.shape[2] != cfg.text_embed_dim:
            raise ContractError(f"text.hidden_states: expected width text_embed_dim={cfg.text_embed_dim} "
                                f"in [B, L, D], got shape {tuple(hidden.shape)}")
        if pooled is None or pooled.shape[1] != cfg.pooled_projection_dim:
            got = "None" if pooled is None else f"shape {tuple(pooled.shape)}"
            raise ContractError(f"text.pooled: expected [B, {cfg.pooled_projection_dim}] "
                                f"(pooled_projection_dim), got {got}")
        if not mask.any(axis=1).all():
            raise ContractError("text.attention_mask: expected at least one real token in every item, "
                                f"got an all-padding row in {mask.astype(int).tolist()}")
        return hidden, mask, pooled

    def _patchify(self, latents: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """``[B, C, T, h, w]`` -> ``[B, T'*h'*w', C*pt*p*p]`` and the token grid."""
        pt, p = self.config.patch_size_t, self.config.patch_size
        batch, channels, frames, height, width = latents.shape
        grid = (frames // pt, height // p, width // p)
        x = latents.reshape(batch, channels, grid[0], pt, grid[1], p, grid[2], p)
        x = x.transpose(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(batch, int(np.prod(grid)), channels * pt * p * p), grid

    def _unpatchify(self, tokens: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
        pt, p = self.config.patch_size_t, self.config.patch_size
        batch = tokens.shape[0]
        x = tokens.reshape(batch, *grid, -1, pt, p, p).transpose(0, 4, 1, 5, 2, 6, 3, 7)
        return np.ascontiguousarray(x.reshape(batch, -1, grid[0] * pt, grid[1] * p, grid[2] * p))

    def _rope_tables(self, grid: tuple[int, int, int], text_length: int) -> tuple[ms.Tensor, ms.Tensor]:
        """``cos, sin [1, N + L, 1, head_dim]``; text rows leave tokens unrotated. The tables of
        the last shape are kept, since sampling calls with one shape every step."""
        key = (*grid, text_length)
        if self._rope is None or self._rope[0] != key:
            cos, sin = rope_tables(grid, self.config.rope_axes_dim, self.config.rope_theta)
            sin = sin.copy()
            sin[:, 0::2] *= -1
            width = cos.shape[1]
            cos = np.concatenate([cos, np.ones((text_length, width), np.float32)])
            sin = np.concatenate([sin, np.zeros((text_length, width), np.float32)])
            self._rope = (key, self._tensor(cos[None, :, None, :]), self._tensor(sin[None, :, None, :]))
        return self._rope[1], self._rope[2]


def build(config: HunyuanVideoTransformerConfig, weights: Path | None) -> HunyuanVideoTransformer:
    """The registered factory."""
    return HunyuanVideoTransformer(config, weights)
