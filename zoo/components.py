"""Listing and building components by kind and name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from plugins.common.checkpoint import read_config
from registry import ComponentInfo, default_registry


def list_components(kind: str | None = None, pattern: str | None = None) -> list[ComponentInfo]:
    """Registered components (optionally of one kind, names matching a glob)."""
    return default_registry().list(kind, pattern)


def load_component(kind: str, name: str, weights: str | Path | None = None, config: str | Path | None = None,
                   **options: Any) -> Any:
    """Build the ``kind`` component registered as ``name``.

    ``weights`` is a component folder (``config.json`` plus safetensors) or a single
    ``.safetensors`` file (diffusers' names or a layout ``plugins.common.keymaps`` knows, such
    as ComfyUI's); a single file carries no config, so it comes from ``config`` (a folder
    with a ``config.json``) or the options alone. Options override the config. Without
    weights, a component with parameters is built randomly initialised. Unknown or ill-typed
    options raise ``ComponentOptionsError``.
    """
    entry = default_registry().get(kind, name)
    saved = read_config(Path(config)) if config is not None else {}
    if config is not None and not Path(config).is_dir():
        raise FileNotFoundError(f"{kind} {name!r}: config folder {config} does not exist")
    if weights is None:
        return entry.create(None, saved, **options)
    weights = Path(weights)
    if weights.is_file():
        return entry.create(weights, saved, **options)
    if not weights.is_dir():
        raise FileNotFoundError(f"{kind} {name!r}: weights {weights} does not exist (a folder or a .safetensors file)")
    return entry.create(weights, saved if config is not None else read_config(weights), **options)
