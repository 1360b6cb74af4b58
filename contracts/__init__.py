"""Framework-neutral contracts: data at a boundary, component protocols, configs, specs."""

from contracts.arrays import (
    ContractError,
    check_array,
    check_batch_vector,
    check_image_latents,
    check_images,
    check_latents,
    check_video,
)
from contracts.config import ComponentConfig
from contracts.data import Schedule, TextEmbeddings
from contracts.kinds import (
    IMAGE_CONDITIONING,
    KINDS,
    PROTOCOLS,
    Autoencoder,
    Backbone,
    Encoder,
    Scheduler,
    image_conditioning,
    latent_channels_of,
    takes_images,
)
from contracts.spec import ComponentSpec, PipelineSpec
from contracts.version import CONTRACT_VERSION, is_compatible

__all__ = [
    "CONTRACT_VERSION",
    "IMAGE_CONDITIONING",
    "KINDS",
    "PROTOCOLS",
    "Autoencoder",
    "Backbone",
    "ComponentConfig",
    "ComponentSpec",
    "ContractError",
    "Encoder",
    "PipelineSpec",
    "Schedule",
    "Scheduler",
    "TextEmbeddings",
    "check_array",
    "check_batch_vector",
    "check_image_latents",
    "check_images",
    "check_latents",
    "check_video",
    "image_conditioning",
    "is_compatible",
    "latent_channels_of",
    "takes_images",
]
