"""The one hook a plugin implements."""

import pluggy

PROJECT = "hunyuan_zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(registry):
    """Register components: ``registry.register(kind, name, factory, ...)``."""
