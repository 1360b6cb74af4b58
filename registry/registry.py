"""The component registry: entries by kind and name, aliases, glob listing."""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts import KINDS, PROTOCOLS, ComponentConfig
from registry.errors import (
    ComponentOptionsError,
    DuplicateComponentError,
    UnknownComponentError,
    UnknownKindError,
)

Factory = Callable[..., Any]


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component as listings show it."""

    kind: str
    name: str
    plugin: str
    summary: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComponentEntry:
    """How to build a component: ``factory(config, weights)``.

    ``factory`` may be a ``"module:attribute"`` string, imported only when the
    component is built, so that listing never imports a heavy framework.
    """

    kind: str
    name: str
    factory: Factory | str
    config: type[ComponentConfig]
    summary: str = ""
    plugin: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def info(self) -> ComponentInfo:
        return ComponentInfo(self.kind, self.name, self.plugin, self.summary, self.aliases)

    def configure(self, saved: dict[str, Any] | None = None, **options: Any) -> ComponentConfig:
        """The component's config: a saved ``config.json`` dict overridden by ``options``.
        Each unknown or ill-typed option is named in a ``ComponentOptionsError``."""
        try:
            return self.config.from_saved(saved or {}, **options)
        except ValidationError as exc:
            fields = list(self.config.model_fields)
            raise ComponentOptionsError(self.kind, self.name, exc, fields) from None

    def build(self, config: ComponentConfig, weights: Path | None = None) -> Any:
        """``factory(config, weights)``, checked against the kind's protocol."""
        component = self.load_factory()(config, weights)
        if not isinstance(component, PROTOCOLS[self.kind]):
            raise TypeError(f"{self.kind} {self.name!r} from plugin {self.plugin!r} does not "
                            f"implement the {self.kind} contract ({PROTOCOLS[self.kind].__name__})")
        return component

    def create(self, weights: Path | None = None, saved: dict[str, Any] | None = None,
               **options: Any) -> Any:
        """``build(configure(saved, **options), weights)``."""
        return self.build(self.configure(saved, **options), weights)

    def load_factory(self) -> Factory:
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
        return target


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UnknownKindError(kind, KINDS)


class Registry:
    """Components by kind and name. Plugins call ``register``; users look up and list."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], ComponentEntry] = {}
        self._aliases: dict[tuple[str, str], str] = {}
        self.plugins: list = []  # PluginInfo of each loaded plugin, filled by load_plugins

    def copy(self) -> Registry:
        other = Registry()
        other._entries, other._aliases = dict(self._entries), dict(self._aliases)
        return other

    def update_from(self, other: Registry) -> None:
        self._entries, self._aliases = dict(other._entries), dict(other._aliases)

    def register(
        self,
        kind: str,
        name: str,
        factory: Factory | str,
        *,
        config: type[ComponentConfig] = ComponentConfig,
        summary: str = "",
        aliases: tuple[str, ...] | list[str] = (),
        plugin: str = "",
    ) -> ComponentEntry:
        """Add a component. ``config`` is the pydantic model of its options."""
        check_kind(kind)
        if not (isinstance(config, type) and issubclass(config, ComponentConfig)):
            raise TypeError(f"{kind} {name!r}: config must be a subclass of "
                            f"contracts.ComponentConfig, got {config!r}")
        entry = ComponentEntry(kind, name, factory, config, summary, plugin, tuple(aliases))
        for key in [name, *entry.aliases]:
            existing = self._lookup(kind, key)
            if existing is not None:
                raise DuplicateComponentError(kind, key, existing.plugin, plugin)
        self._entries[(kind, name)] = entry
        for alias in entry.aliases:
            self._aliases[(kind, alias)] = name
        return entry

    def _lookup(self, kind: str, name: str) -> ComponentEntry | None:
        name = self._aliases.get((kind, name), name)
        return self._entries.get((kind, name))

    def get(self, kind: str, name: str) -> ComponentEntry:
        """The entry of ``kind`` called ``name`` (or an alias of it)."""
        check_kind(kind)
        entry = self._lookup(kind, name)
        if entry is None:
            raise UnknownComponentError(kind, name, self.names(kind), [e.kind for e in self.find(name)],
                                        self.broken_plugins)
        return entry

    def find(self, name: str) -> list[ComponentEntry]:
        """Every entry called ``name`` (or aliased so), whatever its kind."""
        return [e for kind in KINDS if (e := self._lookup(kind, name)) is not None]

    @property
    def broken_plugins(self) -> int:
        return sum(not p.ok for p in self.plugins)

    def names(self, kind: str | None = None) -> list[str]:
        return [n for k, n in [*self._entries, *self._aliases] if kind in (None, k)]

    def list(self, kind: str | None = None, pattern: str | None = None) -> list[ComponentInfo]:
        """Registered components, by kind then name; ``pattern`` is a glob on the name."""
        if kind is not None:
            check_kind(kind)
        entries = [
            e for e in self._entries.values()
            if (kind is None or e.kind == kind)
            and (pattern is None or fnmatch.fnmatchcase(e.name, pattern)
                 or any(fnmatch.fnmatchcase(a, pattern) for a in e.aliases))
        ]
        entries.sort(key=lambda e: (KINDS.index(e.kind), e.name))
        return [e.info for e in entries]
