"""hunyuan-zoo: HunyuanVideo components on MindSpore, assembled by name."""

from registry import ComponentOptionsError
from zoo.assembly import assemble
from zoo.components import list_components, load_component
from zoo.pipeline import TextToVideoPipeline

__all__ = ["ComponentOptionsError", "TextToVideoPipeline", "assemble", "list_components",
           "load_component"]
