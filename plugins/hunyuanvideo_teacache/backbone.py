"""The ``hunyuanvideo-transformer-teacache`` backbone: ``hunyuanvideo-transformer`` whose network runs
TeaCache as published for HunyuanVideo (``teacache_forward`` of ``TeaCache4HunyuanVideo`` in
ali-vilab's TeaCache).

What it follows. Each call embeds the video tokens and the conditioning ``temb`` (timestep, pooled text,
guidance) and takes the modulated input of the first dual-stream block: its ``norm1`` applied to the video
tokens, ``LayerNorm(x) * (1 + scale) + shift`` with that block's shift and scale from ``temb`` (under token
replacement the first frame's tokens take theirs from the timestep-0 conditioning, as in the block). Against
``m'``, the modulated input of the previous call (kept at every call, skipped or not), it measures
``change = mean|m - m'| / mean|m'|`` over the whole batch, rescales it by the published polynomial
(``COEFFICIENTS``, highest power first) and adds it to an accumulator. A call counter picks the calls
always computed: the first (counter 0) and the last (counter ``num_steps - 1``); they reset the
accumulator and measure nothing. Any other call skips every block while the accumulator is below
``rel_l1_thresh``; once it reaches it, the call computes every block and resets the accumulator. The
residual is that of all blocks on the video stream: the video tokens after the last (dual or single)
block minus the embedded video tokens before the first, stored by each computed call; a skipped call adds
it to its embedded video tokens and runs only the final norm and projection. The text stream is not
cached, as in the published code: after the last block only the video stream reaches the output. As
there, the text is embedded (token refiner included) before the decision, so a skipped call still pays
for it.

Where the backbone contract forced a choice:

- The last step. The published code is told the number of sampling steps (``num_steps = infer_steps``);
  a backbone call carries no step index. Here ``num_steps`` is an option, counted in calls of one
  trajectory (the schedule's length); without it no call is forced as the last.
- The counter. The published counter runs over every call of the model and wraps after ``num_steps``.
  Here it belongs to the trajectory (``plugins.hunyuanvideo_transformer.caching``), so it restarts with each
  generation whatever its number of steps, and still wraps after ``num_steps`` calls.
- True CFG. The published sampler runs the negative and positive prompts as one batch, so one decision
  covers both. The pipeline here calls them one after the other; each keeps its own trajectory (as diffusers'
  cache contexts do), so each measures its own change and makes its own decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import ops

from plugins.hunyuanvideo_teacache.config import TeaCacheTransformerConfig
from plugins.hunyuanvideo_transformer.caching import CachedNetwork, CachedTransformer
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D

# The published rescaling of the modulated input's relative L1 change for HunyuanVideo, highest power first.
COEFFICIENTS = (7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02)


@dataclass
class Trajectory:
    """The cache of one denoising trajectory."""

    count: int = 0  # the published ``cnt``: calls since the counter last wrapped
    accumulated: float = 0.0
    previous_input: ms.Tensor | None = None  # the previous call's modulated input
    residual: ms.Tensor | None = None  # all blocks' video residual at the last computed call


class TeaCachedNetwork(CachedNetwork):
    """The transformer network's cells run with TeaCache into ``self.trajectory``. Called as
    ``HunyuanVideoTransformer3D`` is; with ``rel_l1_thresh=0`` its output equals that network's exactly."""

    def __init__(self, network: HunyuanVideoTransformer3D, config: TeaCacheTransformerConfig) -> None:
        super().__init__(network)
        self.threshold, self.num_steps = config.rel_l1_thresh, config.num_steps

    def new_trajectory(self) -> Trajectory:
        return Trajectory()

    def cached_blocks(self, video: ms.Tensor, text: ms.Tensor, temb: ms.Tensor, cos: ms.Tensor, sin: ms.Tensor,
                      joint_mask: ms.Tensor | None, replace_temb: ms.Tensor | None, replaced: int) -> ms.Tensor:
        dual, single = list(self.transformer_blocks), list(self.single_transformer_blocks)
        if self._reuse(dual[0].norm1(video, temb, replace_temb, replaced)[0]):
            return video + self.trajectory.residual
        block_input = video
        video, text = HunyuanVideoTransformer3D.run_blocks(
            dual, single, video, text, temb, cos, sin, joint_mask, replace_temb, replaced)
        self.trajectory.residual = video - block_input
        return video

    def _reuse(self, modulated: ms.Tensor) -> bool:
        """The published decision for this call of the trajectory; True: skip every block."""
        state = self.trajectory
        last = self.num_steps is not None and state.count == self.num_steps - 1
        change = None
        if state.count == 0 or last:
            skip, state.accumulated = False, 0.0
        else:
            previous = state.previous_input
            change = float((ops.abs(modulated - previous).mean() / ops.abs(previous).mean()).asnumpy())
            state.accumulated += float(np.polyval(COEFFICIENTS, change))
            skip = state.accumulated < self.threshold
            if not skip:
                state.accumulated = 0.0
        state.previous_input = modulated
        state.count = 0 if last else state.count + 1
        self.stats.record(change, skip)
        return skip


class TeaCacheTransformer(CachedTransformer):
    """``backbone(latents, timestep, text, guidance=None, image=None) -> velocity``, with TeaCache.

    ``stats`` counts the calls and the calls that skipped every block; ``last_change`` is the last call's
    relative L1 change of the modulated input before rescaling.
    """

    def __init__(self, config: TeaCacheTransformerConfig, weights: Path | None = None) -> None:
        super().__init__(config, weights, TeaCachedNetwork)


def build(config: TeaCacheTransformerConfig, weights: Path | None) -> TeaCacheTransformer:
    """The registered factory."""
    return TeaCacheTransformer(config, weights)
