"""HunyuanVideo's transformer with first-block caching (diffusers' ``FirstBlockCacheConfig``)."""

from plugins.hunyuanvideo_fbcache.config import FirstBlockCacheTransformerConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "backbone", "hunyuanvideo-transformer-fbcache", "plugins.hunyuanvideo_fbcache.backbone:build",
        config=FirstBlockCacheTransformerConfig,
        summary="hunyuanvideo-transformer with first-block caching: steps whose first-block residual "
                "barely changed reuse the other blocks' cached residual (diffusers' FirstBlockCacheConfig)",
    )
