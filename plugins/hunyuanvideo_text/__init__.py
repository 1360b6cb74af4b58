"""HunyuanVideo's text encoders: LLaMA hidden states and CLIP's pooled embedding.

Each half is registered alone, and ``hunyuanvideo-text`` builds the pair by name,
so another plugin can replace either half.
"""

from plugins.hunyuanvideo_text.config import ClipEncoderConfig, LlamaEncoderConfig, TextEncoderConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "encoder", "hunyuanvideo-llama", "plugins.hunyuanvideo_text.llama_encoder:build",
        config=LlamaEncoderConfig,
        summary="LLaMA hidden states of a templated prompt (third-to-last layer, cropped), "
                "as HunyuanVideoPipeline takes them",
    )
    registry.register(
        "encoder", "hunyuanvideo-clip", "plugins.hunyuanvideo_text.clip_encoder:build",
        config=ClipEncoderConfig,
        summary="CLIP text transformer: pooled embedding at the end-of-text token, 77 tokens",
    )
    registry.register(
        "encoder", "hunyuanvideo-text", "plugins.hunyuanvideo_text.encoder:build",
        config=TextEncoderConfig,
        summary="HunyuanVideo's text encoder: LLaMA hidden states plus CLIP's pooled embedding "
                "(diffusers' HunyuanVideoPipeline.encode_prompt)",
    )
