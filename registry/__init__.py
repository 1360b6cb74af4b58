"""The plugin registry: hookspecs, entry-point discovery, lookup and listing."""

from registry.errors import (
    ComponentOptionsError,
    DuplicateComponentError,
    IncompatiblePluginError,
    RegistryError,
    UnknownComponentError,
    UnknownKindError,
)
from registry.hookspecs import hookimpl
from registry.plugins import ENTRY_POINT_GROUP, PluginInfo, default_registry, load_plugins
from registry.registry import ComponentEntry, ComponentInfo, Registry

__all__ = [
    "ENTRY_POINT_GROUP",
    "ComponentEntry",
    "ComponentInfo",
    "ComponentOptionsError",
    "DuplicateComponentError",
    "IncompatiblePluginError",
    "PluginInfo",
    "Registry",
    "RegistryError",
    "UnknownComponentError",
    "UnknownKindError",
    "default_registry",
    "hookimpl",
    "load_plugins",
]
