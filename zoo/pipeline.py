"""The text-to-video pipeline: the four components and the denoising loop between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts import PipelineSpec


@dataclass
class TextToVideoPipeline:
    """The assembled components, each reachable by its kind."""

    spec: PipelineSpec
    encoder: Any
    backbone: Any
    autoencoder: Any
    scheduler: Any
