"""``assemble(spec)``: a pipeline from a component name per kind."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts import ComponentConfig, PipelineSpec
from plugins.common.checkpoint import Checkpoint, read_config
from registry import ComponentEntry, RegistryError, UnknownComponentError, default_registry
from zoo.conditioning import check_assembly
from zoo.pipeline import TextToVideoPipeline
from zoo.presets import PRESETS
from zoo.residency import Components, choose_policy
from zoo.stages import StageLog

# Where each kind's weights lie inside a diffusers pipeline folder.
SUBFOLDERS = {"encoder": ".", "backbone": "transformer", "autoencoder": "vae", "scheduler": "scheduler"}


def as_spec(spec: PipelineSpec | dict[str, Any] | str | Path) -> tuple[PipelineSpec, dict[str, Any]]:
    """A ``PipelineSpec`` (and its preset's generation defaults) from itself, a dict, a
    ``.json``/``.toml`` file or a preset name."""
    if isinstance(spec, PipelineSpec):
        return spec, {}
    if isinstance(spec, dict):
        return PipelineSpec.model_validate(spec), {}
    if str(spec) in PRESETS:
        preset = PRESETS[str(spec)]
        return preset.spec(), preset.defaults
    path = Path(spec)
    if path.suffix in (".json", ".toml"):
        if not path.is_file():
            raise FileNotFoundError(f"pipeline spec {path} does not exist")
        return PipelineSpec.load(path), {}
    close = difflib.get_close_matches(str(spec), PRESETS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"{spec!r} is neither a preset ({', '.join(PRESETS)}) nor a pipeline spec file "
                     f"(.json, .toml); {hint}for a diffusers folder use zoo.from_pretrained")


def component_weights(spec: PipelineSpec, kind: str) -> Path | None:
    """The kind's own weights (a folder, or a single safetensors file), else its subfolder of the
    pipeline folder, else None."""
    own = spec.components()[kind].weights
    if own is not None:
        if own.is_file():
            return own
        if not own.is_dir():
            raise FileNotFoundError(f"{kind} weights folder {own} does not exist")
        return own
    if spec.weights is None:
        return None
    if not spec.weights.is_dir():
        raise FileNotFoundError(f"pipeline folder {spec.weights} does not exist")
    folder = spec.weights / SUBFOLDERS[kind]
    if not folder.is_dir():
        raise FileNotFoundError(f"pipeline folder {spec.weights} has no {SUBFOLDERS[kind]}/ for the {kind}; "
                                f"is the download complete?")
    return folder


def config_folder(spec: PipelineSpec, kind: str, weights: Path | None) -> Path | None:
    """Where the kind's ``config.json`` lies: its weights folder, or, for a single file (which
    carries no config), its subfolder of the pipeline folder."""
    if weights is None or weights.is_dir():
        return weights
    if spec.weights is not None and (spec.weights / SUBFOLDERS[kind]).is_dir():
        return spec.weights / SUBFOLDERS[kind]
    return None


def check_checkpoints(folder: Path, replaced: set[Path] = frozenset()) -> None:
    """Read the safetensors headers of every model subfolder of a pipeline folder (but those whose
    weights come from a single file instead), so a missing or truncated shard or pickled weights
    fail before any component is loaded."""
    for config in sorted(folder.glob("*/config.json")):
        if config.parent not in replaced:
            Checkpoint(config.parent)


@dataclass(frozen=True)
class Plan:
    """A spec resolved without building anything: each kind's entry, weights and config."""

    spec: PipelineSpec
    entries: dict[str, ComponentEntry]
    weights: dict[str, Path | None]
    configs: dict[str, ComponentConfig]


def plan(spec: PipelineSpec) -> Plan:
    """Resolve every name, find every weights folder, validate every option and checkpoint header.

    Cheap, and complete before any component is built: a typo fails in milliseconds,
    not after loading a checkpoint.
    """
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
    folders = {kind: config_folder(spec, kind, weights[kind]) for kind in entries}
    configs = {kind: entries[kind].configure(read_config(folders[kind]) if folders[kind] else {},
                                             **spec.components()[kind].options)
               for kind in entries}
    check_assembly({kind: component.name for kind, component in spec.components().items()}, configs)
    files = {kind: path for kind, path in weights.items() if path is not None and path.is_file()}
    for file in files.values():
        Checkpoint(file)
    if spec.weights is not None:
        check_checkpoints(spec.weights, {folders[kind] for kind in files})
    return Plan(spec, entries, weights, configs)


def assemble(spec: PipelineSpec | dict[str, Any] | str | Path, memory: str = "auto") -> TextToVideoPipeline:
    """The pipeline of ``spec`` (a ``PipelineSpec``, a dict, a spec file or a preset name), after
    ``plan`` has checked all of it. ``memory`` is the residency policy (see ``zoo.residency``):
    ``fast`` builds every component now, ``low`` each when its stage comes."""
    resolved, defaults = as_spec(spec)
    return build(plan(resolved), defaults, memory)


def build(checked: Plan, defaults: dict[str, Any], memory: str = "auto",
          log: StageLog | None = None) -> TextToVideoPipeline:
    """The pipeline of a checked plan, with the generation ``defaults`` of its preset, under the
    ``memory`` policy; ``log`` records the stages (pass one with ``verbose=True`` to print them)."""
    policy, _ = choose_policy(memory, checked)
    components = Components(checked, policy, log or StageLog())
    return TextToVideoPipeline(spec=checked.spec, defaults=defaults, components=components)
