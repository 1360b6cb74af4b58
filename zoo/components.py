"""Listing and building components by kind and name."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts import PROTOCOLS, ComponentConfig
from plugins.common.checkpoint import read_config
from registry import ComponentEntry, ComponentInfo, default_registry


class ComponentOptionsError(ValueError):
    """An option a component does not have, or of the wrong type."""


def list_components(kind: str | None = None, pattern: str | None = None) -> list[ComponentInfo]:
    """Registered components (optionally of one kind, names matching a glob)."""
    return default_registry().list(kind, pattern)


def describe_options(entry: ComponentEntry, error: ValidationError) -> str:
    """One line per bad option, with a suggestion for a misspelt name."""
    fields = list(entry.config.model_fields)
    lines = []
    for problem in error.errors():
        name = ".".join(str(part) for part in problem["loc"]) or "options"
        if problem["type"] == "extra_forbidden":
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; options are: {', '.join(fields)}"
            lines.append(f"unknown option {name!r}{hint}")
        else:
            lines.append(f"option {name!r}: {problem['msg']} (got {problem.get('input')!r})")
    return f"{entry.kind} {entry.name!r}: " + "; ".join(lines)


def build_config(entry: ComponentEntry, weights: Path | None, options: dict[str, Any]) -> ComponentConfig:
    """The component's config: ``weights/config.json`` if there is one, then ``options``."""
    saved = read_config(weights) if weights is not None else {}
    try:
        return entry.config.from_saved(saved, **options)
    except ValidationError as exc:
        raise ComponentOptionsError(describe_options(entry, exc)) from None


def load_component(kind: str, name: str, weights: str | Path | None = None, **options: Any) -> Any:
    """Build the ``kind`` component registered as ``name``.

    ``weights`` is a component folder (``config.json`` plus safetensors); options
    override its config. Without weights, a component with parameters is built
    randomly initialised.
    """
    entry = default_registry().get(kind, name)
    weights = Path(weights) if weights is not None else None
    if weights is not None and not weights.is_dir():
        raise FileNotFoundError(f"{kind} {name!r}: weights folder {weights} does not exist")
    config = build_config(entry, weights, options)
    component = entry.load_factory()(config, weights)
    if not isinstance(component, PROTOCOLS[kind]):
        raise TypeError(f"{kind} {name!r} from plugin {entry.plugin!r} does not implement the "
                        f"{kind} contract ({PROTOCOLS[kind].__name__})")
    return component
