"""HunyuanVideo's transformer backbone (diffusers' ``HunyuanVideoTransformer3DModel``) on MindSpore."""

from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "backbone", "hunyuanvideo-transformer", "plugins.hunyuanvideo_transformer.backbone:build",
        config=HunyuanVideoTransformerConfig,
        summary="HunyuanVideo's dual/single-stream video transformer "
                "(diffusers' HunyuanVideoTransformer3DModel)",
    )
