"""hunyuan-zoo: HunyuanVideo components on MindSpore, assembled by name."""

from zoo.components import ComponentOptionsError, list_components, load_component

__all__ = ["ComponentOptionsError", "list_components", "load_component"]
