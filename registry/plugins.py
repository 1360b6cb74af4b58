"""Discovery: every package's ``hunyuan_zoo`` entry points, built-ins included.

Each entry point names a module with a ``register_components(registry)`` hook.
A plugin that fails to import, declares an incompatible contract version, or
raises while registering is recorded with its error and skipped; the rest of
the registry keeps working.
"""

from __future__ import annotations

import functools
import importlib.metadata
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from contracts import CONTRACT_VERSION, ComponentConfig, is_compatible
from registry import hookspecs
from registry.errors import IncompatiblePluginError
from registry.registry import ComponentEntry, Factory, Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT


@dataclass
class PluginInfo:
    """An installed plugin: its entry point, package, and what became of it."""

    name: str
    package: str
    version: str
    module: str
    contract: str | None = None
    components: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class PluginRegistrar:
    """What a plugin's hook receives: ``register`` on its behalf, all or nothing."""

    contract_version = CONTRACT_VERSION

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.pending: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def register(self, kind: str, name: str, factory: Factory | str, *,
                 config: type[ComponentConfig] = ComponentConfig, summary: str = "",
                 aliases: tuple[str, ...] | list[str] = ()) -> None:
        self.pending.append(((kind, name, factory),
                             {"config": config, "summary": summary, "aliases": aliases}))

    def commit(self, registry: Registry) -> list[ComponentEntry]:
        """Register everything or, if one registration fails, nothing."""
        trial = registry.copy()
        entries = [trial.register(*args, plugin=self.plugin, **kwargs) for args, kwargs in self.pending]
        registry.update_from(trial)
        return entries


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_plugins(
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> Registry:
    """A registry filled from ``entry_points`` (default: the installed ``hunyuan_zoo`` group).

    The loaded plugins, broken ones included, are in ``registry.plugins``.
    """
    if entry_points is None:
        entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    registry = Registry()
    for point in sorted(entry_points, key=lambda p: p.name):
        dist = point.dist
        info = PluginInfo(point.name, dist.name if dist else "?", dist.version if dist else "?",
                          point.value)
        registry.plugins.append(info)
        try:
            module = point.load()
            info.contract = getattr(module, "CONTRACT_VERSION", None)
            if info.contract is not None and not is_compatible(info.contract):
                raise IncompatiblePluginError(point.name, info.contract, CONTRACT_VERSION)
            manager.register(module, name=point.name)
            for impl in manager.hook.register_components.get_hookimpls():
                if impl.plugin_name == point.name:
                    registrar = PluginRegistrar(info.package)
                    impl.function(registry=registrar)
                    info.components += [f"{e.kind}:{e.name}" for e in registrar.commit(registry)]
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            info.error = _describe(exc)
    return registry


@functools.cache
def default_registry() -> Registry:
    """The registry of every installed plugin, loaded once per process."""
    return load_plugins()
