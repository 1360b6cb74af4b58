"""HunyuanVideo's transformer with TeaCache (the published ``TeaCache4HunyuanVideo`` rule)."""

from plugins.hunyuanvideo_teacache.config import TeaCacheTransformerConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "backbone", "hunyuanvideo-transformer-teacache", "plugins.hunyuanvideo_teacache.backbone:build",
        config=TeaCacheTransformerConfig,
        summary="hunyuanvideo-transformer with TeaCache: steps whose modulated input barely changed (rescaled "
                "and accumulated relative L1) reuse the cached residual of all blocks (TeaCache4HunyuanVideo)",
    )
