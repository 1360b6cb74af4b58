"""hunyuan-zoo: HunyuanVideo components on MindSpore, assembled by name."""

from registry import ComponentOptionsError
from zoo.assembly import assemble
from zoo.components import list_components, load_component
from zoo.export import export_video
from zoo.pipeline import GenerationResult, TextToVideoPipeline

__all__ = ["ComponentOptionsError", "GenerationResult", "TextToVideoPipeline", "assemble", "export_video",
           "list_components", "load_component"]
