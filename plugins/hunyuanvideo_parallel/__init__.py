"""HunyuanVideo's transformer split across processes and machines on MindSpore's distributed runtime."""

from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig
from registry import hookimpl

CONTRACT_VERSION = "1.0"


@hookimpl
def register_components(registry):
    registry.register(
        "backbone", "hunyuanvideo-transformer-parallel", "plugins.hunyuanvideo_parallel.backbone:build",
        config=ParallelTransformerConfig,
        summary="hunyuanvideo-transformer with its blocks' weights split across msrun's processes (heads and "
                "MLP features, an AllReduce after each output projection); whole in a single process",
    )
