"""hunyuan-zoo: HunyuanVideo components on MindSpore, assembled by name."""

from registry import ComponentOptionsError
from zoo.assembly import assemble
from zoo.components import list_components, load_component
from zoo.export import export_video
from zoo.pipeline import GenerationResult, TextToVideoPipeline
from zoo.presets import PRESETS
from zoo.pretrained import from_pretrained

__all__ = ["PRESETS", "ComponentOptionsError", "GenerationResult", "TextToVideoPipeline", "assemble",
           "export_video", "from_pretrained", "list_components", "load_component"]
