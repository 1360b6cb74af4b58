"""``assemble(spec)``: a pipeline from a component name per kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts import PipelineSpec
from plugins.common.checkpoint import read_config
from registry import RegistryError, UnknownComponentError, default_registry
from zoo.pipeline import TextToVideoPipeline

# Where each kind's weights lie inside a diffusers pipeline folder.
SUBFOLDERS = {"encoder": ".", "backbone": "transformer", "autoencoder": "vae", "scheduler": "scheduler"}


def as_spec(spec: PipelineSpec | dict[str, Any] | str | Path) -> PipelineSpec:
    """A ``PipelineSpec`` from itself, a dict, or a ``.json``/``.toml`` file."""
    if isinstance(spec, PipelineSpec):
        return spec
    if isinstance(spec, dict):
        return PipelineSpec.model_validate(spec)
    path = Path(spec)
    if path.suffix in (".json", ".toml"):
        if not path.is_file():
            raise FileNotFoundError(f"pipeline spec {path} does not exist")
        return PipelineSpec.load(path)
    raise ValueError(f"{spec!r} is neither a pipeline spec file (.json, .toml) nor a spec")


def component_weights(spec: PipelineSpec, kind: str) -> Path | None:
    own = spec.components()[kind].weights
    if own is not None:
        return own
    if spec.weights is None:
        return None
    folder = spec.weights / SUBFOLDERS[kind]
    return folder if folder.is_dir() else None


def assemble(spec: PipelineSpec | dict[str, Any] | str | Path) -> TextToVideoPipeline:
    """Build every component of ``spec``.

    All names are resolved and all options validated before any component is
    built, so a typo fails in milliseconds, not after loading a checkpoint.
    """
    spec = as_spec(spec)
    registry = default_registry()
    entries, unknown = {}, []
    for kind, component in spec.components().items():
        try:
            entries[kind] = registry.get(kind, component.name)
        except UnknownComponentError as exc:
            unknown.append(str(exc))
    if unknown:
        raise RegistryError("; ".join(unknown))
    weights = {kind: component_weights(spec, kind) for kind in entries}
    for kind, folder in weights.items():
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{kind} weights folder {folder} does not exist")
    configs = {
        kind: entries[kind].configure(read_config(weights[kind]) if weights[kind] else {},
                                      **spec.components()[kind].options)
        for kind in entries
    }
    components = {kind: entries[kind].build(configs[kind], weights[kind]) for kind in entries}
    return TextToVideoPipeline(spec=spec, **components)
