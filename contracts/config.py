"""The base of every component's config: pydantic, strict about unknown options."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class ComponentConfig(BaseModel):
    """Options of a component. Unknown options are refused by name.

    Field names of built-in models follow the checkpoint's ``config.json`` so that a
    diffusers config loads as data.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    # Saved keys the component does not model but accepts silently at these values
    # (features it does not have, switched off); another value is warned about.
    inert_saved_keys: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_saved(cls, saved: dict[str, Any], **options: Any) -> ComponentConfig:
        """Build from a saved ``config.json``, with ``options`` overriding it.

        ``_``-prefixed bookkeeping keys are dropped; so are other keys this config does not
        model, with a warning unless ``inert_saved_keys`` lists them at their saved value.
        """
        known = {k: v for k, v in saved.items() if k in cls.model_fields}
        ignored = sorted(f"{k}={v!r}" for k, v in saved.items()
                         if k not in cls.model_fields and not k.startswith("_")
                         and (k not in cls.inert_saved_keys or cls.inert_saved_keys[k] != v))
        if ignored:
            warnings.warn(f"{cls.__name__}: ignoring config.json settings it does not support: "
                          f"{', '.join(ignored)}", stacklevel=2)
        return cls.model_validate({**known, **options})

