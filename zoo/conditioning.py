"""Image-to-video: what the pipeline does differently for each conditioning a backbone declares.

The backbone's config says how it takes the image (``contracts.IMAGE_CONDITIONING``); the
family member follows from it, and with it diffusers' pipeline steps:

- HunyuanVideo-I2V (``token_replace``, or ``latent_concat`` with the mask channel;
  ``HunyuanVideoImageToVideoPipeline``): the encoder reads the image with the prompt, the
  initial latents are ``0.999 * noise + 0.001 * image``; under ``token_replace`` the first
  latent frame stays the image's and only the others are stepped, under ``latent_concat``
  the first decoded ``temporal_compression`` frames are dropped;
- SkyReels-V1 (``latent_concat`` without a mask; ``HunyuanSkyreelsImageToVideoPipeline``):
  a text-only encoder, the initial latents are the noise.

The image's latents are the autoencoder's posterior mean, as diffusers' I2V pipeline takes
them (its mode); diffusers' SkyReels pipeline draws a sample from the posterior instead, so
its image latents carry the posterior's noise where ours do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contracts import ComponentConfig, image_conditioning, latent_channels_of, takes_images
from zoo.images import ImageError

# diffusers' initial latents for HunyuanVideo-I2V: mostly noise, a trace of the image.
NOISE_SHARE = np.float32(0.999)
# diffusers' image_embed_interleave per condition type, when the call does not give one.
INTERLEAVE = {"latent_concat": 2, "token_replace": 4}
IMAGE_MODELS = "hunyuanvideo-i2v, skyreels-v1-i2v"


def condition_channels(backbone_config: Any) -> int:
    return int(getattr(backbone_config, "condition_channels", 0))


def family(backbone_config: Any) -> str | None:
    """``hunyuanvideo-i2v``, ``skyreels-v1`` or None (text to video) for a backbone config."""
    kind = image_conditioning(backbone_config)
    if kind == "none":
        return None
    if kind == "latent_concat" and condition_channels(backbone_config) == latent_channels_of(backbone_config):
        return "skyreels-v1"
    return "hunyuanvideo-i2v"


def check_assembly(names: dict[str, str], configs: dict[str, ComponentConfig]) -> None:
    """Refuse components that cannot work together, naming both, before any is built."""
    backbone, autoencoder, encoder = configs["backbone"], configs["autoencoder"], configs["encoder"]
    channels = latent_channels_of(backbone)
    if channels != autoencoder.latent_channels:
        raise ValueError(f"backbone {names['backbone']!r} denoises {channels}-channel latents but autoencoder "
                         f"{names['autoencoder']!r} makes {autoencoder.latent_channels}-channel ones; "
                         f"they cannot be assembled")
    kind = image_conditioning(backbone)
    if kind == "latent_concat" and condition_channels(backbone) not in (channels, channels + 1):
        raise ValueError(f"backbone {names['backbone']!r} declares latent_concat with {condition_channels(backbone)} "
                         f"extra channels; the pipeline gives {channels} (image latents) or {channels + 1} "
                         f"(and a mask)")
    if family(backbone) == "hunyuanvideo-i2v" and not takes_images(encoder):
        raise ValueError(f"backbone {names['backbone']!r} ({kind}, HunyuanVideo-I2V) needs an encoder that reads "
                         f"the image with the prompt, but encoder {names['encoder']!r} takes prompts only; "
                         f"use hunyuanvideo-i2v-text")


def check_image_request(backbone_name: str, backbone_config: Any, has_image: bool) -> None:
    """An image exactly when the backbone takes one."""
    kind = image_conditioning(backbone_config)
    if has_image and kind == "none":
        raise ImageError(f"an image was given, but backbone {backbone_name!r} is text-to-video "
                         f"(image_conditioning none); leave the image out or use an image-to-video model "
                         f"({IMAGE_MODELS})")
    if not has_image and kind != "none":
        raise ImageError(f"backbone {backbone_name!r} is image-to-video ({kind}) and needs an image to animate; "
                         f"give one (--image FILE)")


@dataclass(frozen=True)
class ImageCondition:
    """The image's scaled latents ``[B, C, 1, h, w]`` and what the pipeline does with them."""

    latents: np.ndarray
    kind: str
    family: str

    def initial(self, noise: np.ndarray) -> np.ndarray:
        if self.family != "hunyuanvideo-i2v":
            return noise
        return noise * NOISE_SHARE + self.latents * (np.float32(1) - NOISE_SHARE)

    def step(self, scheduler: Any, velocity: np.ndarray, schedule: Any, index: int,
             sample: np.ndarray) -> np.ndarray:
        if self.kind != "token_replace":
            return scheduler.step(velocity, schedule, index, sample)
        later = scheduler.step(velocity[:, :, 1:], schedule, index, sample[:, :, 1:])
        return np.concatenate([self.latents, later], axis=2)

    def frames(self, video: np.ndarray, temporal_compression: int) -> np.ndarray:
        """The decoded video as diffusers returns it: HunyuanVideo-I2V's ``latent_concat`` drops the
        frames of the first latent frame."""
        if self.family == "hunyuanvideo-i2v" and self.kind == "latent_concat":
            return video[:, :, temporal_compression:]
        return video
