"""Listing and building components by kind and name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.common.checkpoint import read_config
from registry import ComponentInfo, default_registry


def list_components(kind: str | None = None, pattern: str | None = None) -> list[ComponentInfo]:
    """Registered components (optionally of one kind, names matching a glob)."""
    return default_registry().list(kind, pattern)


def load_component(kind: str, name: str, weights: str | Path | None = None, **options: Any) -> Any:
    """Build the ``kind`` component registered as ``name``.

    ``weights`` is a component folder (``config.json`` plus safetensors); options
    override its config. Without weights, a component with parameters is built
    randomly initialised. Unknown or ill-typed options raise ``ComponentOptionsError``.
    """
    entry = default_registry().get(kind, name)
    if weights is None:
        return entry.create(None, {}, **options)
    weights = Path(weights)
    if not weights.is_dir():
        raise FileNotFoundError(f"{kind} {name!r}: weights folder {weights} does not exist")
    return entry.create(weights, read_config(weights), **options)
