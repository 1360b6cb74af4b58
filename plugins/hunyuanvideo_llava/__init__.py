"""HunyuanVideo-I2V's prompt+image encoder: LLaVA (CLIP vision tower, projector, LLaMA) hidden
states of the templated prompt with the image in it, and CLIP's pooled embedding of the prompt.

``hunyuanvideo-llava`` is registered alone, and ``hunyuanvideo-i2v-text`` builds it with
``hunyuanvideo-clip`` by name, so another plugin can replace either half.
"""

from plugins.hunyuanvideo_llava.config import I2VTextEncoderConfig, LlavaEncoderConfig
from registry import hookimpl

CONTRACT_VERSION = "1.1"


@hookimpl
def register_components(registry):
    registry.register(
        "encoder", "hunyuanvideo-llava", "plugins.hunyuanvideo_llava.encoder:build",
        config=LlavaEncoderConfig,
        summary="LLaVA hidden states of a templated prompt with its image (image tokens interleaved, "
                "then the text, cropped), as HunyuanVideoImageToVideoPipeline takes them",
    )
    registry.register(
        "encoder", "hunyuanvideo-i2v-text", "plugins.hunyuanvideo_llava.composite:build",
        config=I2VTextEncoderConfig,
        summary="HunyuanVideo-I2V's text encoder: LLaVA hidden states of prompt and image plus CLIP's "
                "pooled embedding (diffusers' HunyuanVideoImageToVideoPipeline.encode_prompt)",
    )
