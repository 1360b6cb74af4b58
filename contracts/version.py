"""The contract version: what a plugin declares it was built against.

A plugin module may set ``CONTRACT_VERSION = "MAJOR.MINOR"``. The registry accepts
it when the major versions are equal and the plugin's minor version is not newer
than ours; otherwise the plugin is refused at load time with both versions named.
"""

# 1.1 (additive): conditioning images; a backbone declares the image conditioning it accepts,
# an encoder whether it takes images. Plugins built for 1.0 are text-to-video components as before.
CONTRACT_VERSION = "1.1"


def parse_version(version: str) -> tuple[int, int]:
    """``"1.2"`` -> ``(1, 2)``; anything else is a ``ValueError`` that quotes it."""
    try:
        major, minor = (int(part) for part in str(version).split("."))
    except ValueError:
        raise ValueError(f"contract version {version!r} is not of the form 'MAJOR.MINOR'") from None
    return major, minor


def is_compatible(plugin_version: str, ours: str = CONTRACT_VERSION) -> bool:
    """Whether a plugin built for ``plugin_version`` works with contract ``ours``."""
    plugin_major, plugin_minor = parse_version(plugin_version)
    our_major, our_minor = parse_version(ours)
    return plugin_major == our_major and plugin_minor <= our_minor
