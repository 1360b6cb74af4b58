"""Framework-neutral contracts: data at a boundary, component protocols, configs, specs."""

from contracts.arrays import (
    ContractError,
    check_array,
    check_batch_vector,
    check_images,
    check_latents,
    check_video,
)
from contracts.config import ComponentConfig
from contracts.data import Schedule, TextEmbeddings
from contracts.kinds import KINDS, PROTOCOLS, Autoencoder, Backbone, Encoder, Scheduler
from contracts.spec import ComponentSpec, PipelineSpec
from contracts.version import CONTRACT_VERSION, is_compatible

__all__ = [
    "CONTRACT_VERSION",
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
    "check_images",
    "check_latents",
    "check_video",
    "is_compatible",
]
