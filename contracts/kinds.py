"""The four component kinds and the ``Protocol`` each implementation satisfies.

Every component is built as ``factory(config, weights)`` from its pydantic config
(see ``contracts.config``) and an optional weights folder, keeps that config as
``component.config``, and exchanges numpy arrays with the rest of the pipeline.

What the pipeline and the contract kit read from a component's config:

- backbone: ``in_channels``, ``text_embed_dim``, ``pooled_projection_dim``,
  ``patch_size``, ``patch_size_t``, ``guidance_embeds`` (diffusers' names);
- autoencoder: ``latent_channels``, ``spatial_compression``,
  ``temporal_compression``, ``scaling_factor``, ``causal`` (fields or properties).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from contracts.data import Schedule, TextEmbeddings

KINDS: tuple[str, ...] = ("encoder", "backbone", "autoencoder", "scheduler")


@runtime_checkable
class Encoder(Protocol):
    """Prompts to text embeddings."""

    config: Any

    def encode(self, prompts: Sequence[str]) -> TextEmbeddings: ...


@runtime_checkable
class Backbone(Protocol):
    """Predicts the flow-matching velocity of ``latents [B, C, T, h, w]``.

    ``timestep [B]`` is on the scheduler's 0..1000 scale; ``guidance [B]`` is the
    user's guidance scale (e.g. 6.0) for guidance-distilled models, else None.
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
