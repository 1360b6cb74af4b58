"""Options of the first-block-cached transformer (pydantic only, importable without a framework).

The transformer's own options, under diffusers' names so that a checkpoint's
``config.json`` loads as data, plus the cache's ``threshold``, named and defaulted
as in diffusers' ``FirstBlockCacheConfig``.
"""

from pydantic import Field

from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig


class FirstBlockCacheTransformerConfig(HunyuanVideoTransformerConfig):
    """``threshold`` bounds the relative change of the first block's residual, ``mean|r - r'| / mean|r'|``
    against the residual ``r'`` of the last fully computed call, under which a call reuses the cached
    residual of the remaining blocks. Higher is faster and further from the uncached output; 0 never reuses.
    """

    threshold: float = Field(0.05, ge=0, description="largest relative change of the first block's residual "
                                                     "that reuses the other blocks' cached residual; 0 never does")
