"""The four component kinds and the ``Protocol`` each implementation satisfies.

Every component is built as ``factory(config, weights)`` from its pydantic config
(see ``contracts.config``) and an optional weights folder, keeps that config as
``component.config``, and exchanges numpy arrays with the rest of the pipeline.

What the pipeline and the contract kit read from a component's config:

- backbone: ``in_channels``, ``text_embed_dim``, ``pooled_projection_dim``,
  ``patch_size``, ``patch_size_t``, ``guidance_embeds`` (diffusers' names); since
  contract 1.1 optionally ``out_channels``, ``image_conditioning`` (one of
  ``IMAGE_CONDITIONING``) and ``condition_channels``;
- encoder: since 1.1 optionally ``takes_images`` (True: ``encode(prompts, images=...)``);
- autoencoder: ``latent_channels``, ``spatial_compression``,
  ``temporal_compression``, ``scaling_factor``, ``causal`` (fields or properties).

A config without the 1.1 attributes is a text-to-video component of contract 1.0:
read through ``image_conditioning``, ``latent_channels_of`` and ``takes_images``
below, it accepts no image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from contracts.data import Schedule, TextEmbeddings

KINDS: tuple[str, ...] = ("encoder", "backbone", "autoencoder", "scheduler")

# How a backbone takes a conditioning image's latents ``[B, C, 1, h, w]``:
# ``none``: it takes none (text to video);
# ``latent_concat``: on extra input channels, the image's latents on the first frame and zeros
#   after it (``condition_channels == C``, SkyReels-V1), plus a first-frame mask channel
#   (``condition_channels == C + 1``, HunyuanVideo-I2V);
# ``token_replace``: as the first latent frame itself, whose tokens the backbone conditions on
#   timestep 0 (HunyuanVideo-I2V); the pipeline keeps that frame fixed.
IMAGE_CONDITIONING: tuple[str, ...] = ("none", "latent_concat", "token_replace")


def image_conditioning(backbone_config: Any) -> str:
    """The conditioning a backbone config declares; ``none`` for one of contract 1.0."""
    value = getattr(backbone_config, "image_conditioning", "none")
    if value not in IMAGE_CONDITIONING:
        raise ValueError(f"backbone config declares image_conditioning={value!r}; "
                         f"expected one of {', '.join(IMAGE_CONDITIONING)}")
    return value


def latent_channels_of(backbone_config: Any) -> int:
    """The channels of the latents a backbone denoises (its velocity's channels)."""
    return int(getattr(backbone_config, "out_channels", None) or backbone_config.in_channels)


def takes_images(encoder_config: Any) -> bool:
    """Whether an encoder config declares ``encode(prompts, images=...)``; False for contract 1.0."""
    return bool(getattr(encoder_config, "takes_images", False))


@runtime_checkable
class Encoder(Protocol):
    """Prompts to text embeddings. An encoder whose config has ``takes_images = True`` also
    takes ``images=`` (8-bit RGB ``[B, H, W, 3]``, see ``check_images``), one per prompt."""

    config: Any

    def encode(self, prompts: Sequence[str]) -> TextEmbeddings: ...


@runtime_checkable
class Backbone(Protocol):
    """Predicts the flow-matching velocity of ``latents [B, C, T, h, w]``.

    ``timestep [B]`` is on the scheduler's 0..1000 scale; ``guidance [B]`` is the
    user's guidance scale (e.g. 6.0) for guidance-distilled models, else None. A backbone
    whose config declares an ``image_conditioning`` other than ``none`` also takes
    ``image=``, the conditioning image's scaled latents ``[B, C, 1, h, w]``
    (see ``check_image_latents``); one of ``none`` is never passed it.
    """

    config: Any

    def __call__(
        self,
        latents: np.ndarray,
        timestep: np.ndarray,
        text: TextEmbeddings,
        guidance: np.ndarray | None = None,
    ) -> np.ndarray: ...


@runtime_checkable
class Autoencoder(Protocol):
    """Video ``[B, 3, F, H, W]`` in [-1, 1] to latents ``[B, C, T, h, w]`` and back.

    ``encode`` returns the posterior mean, unscaled; the pipeline applies
    ``config.scaling_factor``. The config also exposes ``latent_channels``,
    ``spatial_compression``, ``temporal_compression`` and ``causal``.
    """

    config: Any

    def encode(self, video: np.ndarray) -> np.ndarray: ...

    def decode(self, latents: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Scheduler(Protocol):
    """Turns velocities into a denoising trajectory; numpy in, numpy out."""

    config: Any

    def schedule(self, num_inference_steps: int) -> Schedule: ...

    def step(self, velocity: np.ndarray, schedule: Schedule, index: int,
             sample: np.ndarray) -> np.ndarray: ...


PROTOCOLS: dict[str, type] = {
    "encoder": Encoder,
    "backbone": Backbone,
    "autoencoder": Autoencoder,
    "scheduler": Scheduler,
}
