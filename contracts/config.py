"""The base of every component's config: pydantic, strict about unknown options."""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict


class ComponentConfig(BaseModel):
    """Options of a component. Unknown options are refused by name.

    Field names of built-in models follow the checkpoint's ``config.json`` so that a
    diffusers config loads as data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @classmethod
    def from_saved(cls, saved: dict[str, Any], **options: Any) -> ComponentConfig:
        """Build from a saved ``config.json`` (its ``_``-prefixed bookkeeping keys and
        keys this config does not model are dropped, the latter with a warning),
        with ``options`` overriding it."""
        known = {k: v for k, v in saved.items() if k in cls.model_fields}
        ignored = sorted(k for k in saved if k not in cls.model_fields and not k.startswith("_"))
        if ignored:
            warnings.warn(f"{cls.__name__}: ignoring config.json keys {ignored}", stacklevel=2)
        return cls.model_validate({**known, **options})

