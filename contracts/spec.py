"""``PipelineSpec``: which component of each kind, with what options and weights."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class ComponentSpec(BaseModel):
    """One component: a registered name, its options, and optionally a weights folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    options: dict[str, Any] = {}
    weights: Path | None = None


class PipelineSpec(BaseModel):
    """A text-to-video pipeline by name. A kind may be given as just a name::

        PipelineSpec(encoder="hunyuanvideo-text", backbone="hunyuanvideo-transformer",
                     autoencoder="hunyuanvideo-vae", scheduler="flow-match-euler")

    ``weights``, when set, is a pipeline folder; a component without weights of its
    own then reads that folder's subfolder for its kind.
    """

    model_config = ConfigDict(extra="forbid")

    encoder: ComponentSpec
    backbone: ComponentSpec
    autoencoder: ComponentSpec
    scheduler: ComponentSpec
    weights: Path | None = None

    @field_validator("encoder", "backbone", "autoencoder", "scheduler", mode="before")
    @classmethod
    def _name_only(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def components(self) -> dict[str, ComponentSpec]:
        """Kind -> component spec, in pipeline order."""
        return {"encoder": self.encoder, "backbone": self.backbone,
                "autoencoder": self.autoencoder, "scheduler": self.scheduler}

    def replace(self, **kinds: str | dict[str, Any] | ComponentSpec) -> PipelineSpec:
        """A copy with some kinds swapped, e.g. ``spec.replace(scheduler="flow-match-heun")``."""
        data = self.model_dump()
        for kind, value in kinds.items():
            data[kind] = value.model_dump() if isinstance(value, ComponentSpec) else value
        return PipelineSpec.model_validate(data)

    @classmethod
    def from_json(cls, text: str) -> PipelineSpec:
        return cls.model_validate(json.loads(text))

    @classmethod
    def from_toml(cls, text: str) -> PipelineSpec:
        return cls.model_validate(tomllib.loads(text))

    @classmethod
    def load(cls, path: str | Path) -> PipelineSpec:
        """Read a ``.json`` or ``.toml`` file."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".json":
            return cls.from_json(text)
        if path.suffix == ".toml":
            return cls.from_toml(text)
        raise ValueError(f"{path}: a pipeline spec is a .json or .toml file")
