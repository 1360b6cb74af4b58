"""The ``hunyuanvideo-transformer-fbcache`` backbone: ``hunyuanvideo-transformer`` whose network runs
first-block caching, as diffusers' ``apply_first_block_cache`` runs it on ``HunyuanVideoTransformer3DModel``.

Each call runs the embedders and the first block (the first dual-stream block, or the first
single-stream block when there is none) and takes the video residual ``r`` of that block (its video
output minus its video input). Against ``r'``, the residual stored by the last call that ran every
block, it computes ``change = mean|r - r'| / mean|r'|`` over the whole batch. If ``change <= threshold``
the remaining blocks are skipped: the video stream becomes the first block's output plus the cached
residual of the remaining blocks (their video output minus their video input at that last full call).
Otherwise every block runs, and both residuals are stored. The text stream's residual, which diffusers
also caches, is not kept: after the last block only the video stream reaches the output.

The cache state is kept per denoising trajectory, as ``plugins.hunyuanvideo_transformer.caching`` chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
from mindspore import ops

from plugins.hunyuanvideo_fbcache.config import FirstBlockCacheTransformerConfig
from plugins.hunyuanvideo_transformer.caching import CachedNetwork, CachedTransformer
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D


@dataclass
class Trajectory:
    """The cache of one denoising trajectory: the residuals of the first block and of the others at the
    last call that ran every block."""

    head_residual: ms.Tensor | None = None
    tail_residual: ms.Tensor | None = None


class FirstBlockCachedNetwork(CachedNetwork):
    """The transformer network's cells run with first-block caching into ``self.trajectory``. Called as
    ``HunyuanVideoTransformer3D`` is; with ``threshold=0`` its output equals that network's exactly."""

    def __init__(self, network: HunyuanVideoTransformer3D, config: FirstBlockCacheTransformerConfig) -> None:
        super().__init__(network)
        self.threshold = config.threshold

    def new_trajectory(self) -> Trajectory:
        return Trajectory()

    def cached_blocks(self, video: ms.Tensor, text: ms.Tensor, temb: ms.Tensor, cos: ms.Tensor, sin: ms.Tensor,
                      joint_mask: ms.Tensor | None, replace_temb: ms.Tensor | None, replaced: int) -> ms.Tensor:
        dual, single = list(self.transformer_blocks), list(self.single_transformer_blocks)
        if not dual and not single:
            return video
        head, tail = ((dual[:1], []), (dual[1:], single)) if dual else (([], single[:1]), ([], single[1:]))
        head_input = video
        conditioning = (temb, cos, sin, joint_mask, replace_temb, replaced)
        video, text = HunyuanVideoTransformer3D.run_blocks(*head, video, text, *conditioning)
        if self._reuse(video - head_input):
            return video + self.trajectory.tail_residual
        head_output = video
        video, text = HunyuanVideoTransformer3D.run_blocks(*tail, video, text, *conditioning)
        self.trajectory.tail_residual = video - head_output
        return video

    def _reuse(self, residual: ms.Tensor) -> bool:
        """diffusers' rule: skip the remaining blocks unless the change exceeds the threshold (and
        never with threshold 0). The stored residual is replaced only by a call that runs every block."""
        previous = self.trajectory.head_residual
        change = None
        if previous is not None:
            change = float((ops.abs(residual - previous).mean() / ops.abs(previous).mean()).asnumpy())
        skip = change is not None and 0 < self.threshold and change <= self.threshold
        if not skip:
            self.trajectory.head_residual = residual
        self.stats.record(change, skip)
        return skip


class FirstBlockCacheTransformer(CachedTransformer):
    """``backbone(latents, timestep, text, guidance=None, image=None) -> velocity``, with first-block caching.

    ``stats`` counts the calls and the calls that skipped the remaining blocks.
    """

    def __init__(self, config: FirstBlockCacheTransformerConfig, weights: Path | None = None) -> None:
        super().__init__(config, weights, FirstBlockCachedNetwork)


def build(config: FirstBlockCacheTransformerConfig, weights: Path | None) -> FirstBlockCacheTransformer:
    """The registered factory."""
    return FirstBlockCacheTransformer(config, weights)
