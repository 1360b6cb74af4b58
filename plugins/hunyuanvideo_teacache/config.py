"""Options of the TeaCache transformer (pydantic only, importable without a framework).

The transformer's own options, under diffusers' names so that a checkpoint's ``config.json`` loads as
data, plus the cache's ``rel_l1_thresh`` and ``num_steps``, named as in the published TeaCache for
HunyuanVideo.
"""

from pydantic import Field, model_validator

from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig


class TeaCacheTransformerConfig(HunyuanVideoTransformerConfig):
    """``rel_l1_thresh`` bounds the accumulated, rescaled relative change of the first dual-stream block's
    modulated input under which a call reuses the cached residual of all blocks: 0.1 and 0.15 are the
    published settings (about 1.6x and 2.1x on the 13B model), 0.15 the published script's. The rescaled
    change of one step is at least 0.052, so a threshold up to that never reuses.

    ``num_steps`` is the number of backbone calls in one denoising trajectory (the schedule's length:
    ``num_inference_steps`` for ``flow-match-euler``, ``2 * num_inference_steps - 1`` for
    ``flow-match-heun``); its last call is always computed, as the published rule computes the last step.
    None: the backbone cannot know which call is the last, and decides it like any other.
    """

    rel_l1_thresh: float = Field(0.15, ge=0, description="accumulated rescaled relative L1 change of the modulated "
                                                         "input under which the cached residual is reused")
    num_steps: int | None = Field(None, ge=1, description="backbone calls per denoising trajectory, so that the "
                                                          "last is always computed; None: not known")

    @model_validator(mode="after")
    def _has_a_dual_stream_block(self) -> "TeaCacheTransformerConfig":
        if self.num_layers < 1:
            raise ValueError("TeaCache measures the first dual-stream block's modulated input: num_layers must be "
                             "at least 1 (use hunyuanvideo-transformer-fbcache for a model without one)")
        return self
