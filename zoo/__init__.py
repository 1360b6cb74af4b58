"""hunyuan-zoo: HunyuanVideo components on MindSpore, assembled by name."""

from registry import ComponentOptionsError
from zoo.components import list_components, load_component

__all__ = ["ComponentOptionsError", "list_components", "load_component"]
