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

Trajectories. A cached residual is only worth reusing between neighbouring steps of one denoising
trajectory. diffusers keeps one state per named cache context (``"cond"``, ``"uncond"``) and its pipeline
resets them after each generation; the backbone contract has neither, so the state is keyed by what stays
fixed along a trajectory: the text embeddings (by content), the latents' shape and the guidance. A call
starts its trajectory afresh when its timestep is higher than the previous call's (a new schedule) or when
it repeats the previous call (same timestep and latents, which no sampler does, so equal inputs give
equal outputs). A repeated timestep with new latents continues it: Heun's corrector and the next
predictor share a timestep. The ``TRAJECTORIES`` most recently used are kept: a prompt and, under true
CFG, its negative, called alternately at each step.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from contracts import ContractError, TextEmbeddings, check_batch_vector, check_latents
from plugins.hunyuanvideo_fbcache.config import FirstBlockCacheTransformerConfig
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D

TRAJECTORIES = 2
# The transformer network's cells the cached network shares, under the same names (so the same parameter names).
NETWORK_CELLS = ("x_embedder", "context_embedder", "time_text_embed", "transformer_blocks",
                 "single_transformer_blocks", "norm_out", "proj_out")


@dataclass
class Trajectory:
    """The cache of one denoising trajectory, and the call that last extended it."""

    timestep: np.ndarray | None = None
    latents_digest: bytes = b""
    head_residual: ms.Tensor | None = None
    tail_residual: ms.Tensor | None = None


@dataclass
class CacheStats:
    """Counts over the backbone's life. ``last_change`` is the relative change of the first block's
    residual at the last call, None when that call had no stored residual to compare with."""

    calls: int = 0
    skipped: int = 0
    last_change: float | None = None
    last_skipped: bool = False


class FirstBlockCachedNetwork(nn.Cell):
    """The transformer network's cells (shared: same parameters, same names), run with first-block
    caching into ``self.trajectory``. Called as ``HunyuanVideoTransformer3D`` is; with ``threshold=0``
    its output equals that network's exactly."""

    def __init__(self, network: HunyuanVideoTransformer3D, heads: int, threshold: float) -> None:
        super().__init__()
        for name in NETWORK_CELLS:
            setattr(self, name, getattr(network, name))
        self.heads, self.threshold = heads, threshold
        self.trajectory = Trajectory()
        self.stats = CacheStats()

    def construct(self, patches: ms.Tensor, timestep_sin: ms.Tensor, guidance_sin: ms.Tensor | None,
                  text: ms.Tensor, real: ms.Tensor, pooled: ms.Tensor, cos: ms.Tensor, sin: ms.Tensor,
                  text_mask: ms.Tensor | None, joint_mask: ms.Tensor | None) -> ms.Tensor:
        # The network's own steps, on the shared cells this cell holds under the same names.
        video, text, temb, cos, sin = HunyuanVideoTransformer3D.embed(
            self, patches, timestep_sin, guidance_sin, text, real, pooled, cos, sin, text_mask)
        dual, single = list(self.transformer_blocks), list(self.single_transformer_blocks)
        if not dual and not single:
            return self.proj_out(self.norm_out(video, temb))
        head, tail = ((dual[:1], []), (dual[1:], single)) if dual else (([], single[:1]), ([], single[1:]))
        head_input = video
        video, text = HunyuanVideoTransformer3D.run_blocks(*head, video, text, temb, cos, sin, joint_mask)
        if self._reuse(video - head_input):
            video = video + self.trajectory.tail_residual
        else:
            head_output = video
            video, text = HunyuanVideoTransformer3D.run_blocks(*tail, video, text, temb, cos, sin, joint_mask)
            self.trajectory.tail_residual = video - head_output
        return self.proj_out(self.norm_out(video, temb))

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
        stats = self.stats
        stats.calls, stats.skipped = stats.calls + 1, stats.skipped + skip
        stats.last_change, stats.last_skipped = change, skip
        return skip


def _digest(*arrays: np.ndarray | None) -> bytes:
    """A content key of arrays (shapes and dtypes included)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        if array is None:
            digest.update(b"none")
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.digest()


class FirstBlockCacheTransformer(HunyuanVideoTransformer):
    """``backbone(latents, timestep, text, guidance=None) -> velocity``, with first-block caching.

    ``stats`` counts the calls and the calls that skipped the remaining blocks.
    """

    def __init__(self, config: FirstBlockCacheTransformerConfig, weights: Path | None = None) -> None:
        super().__init__(config, weights)
        self.network = FirstBlockCachedNetwork(self.network, config.num_attention_heads, config.threshold)
        self.stats = self.network.stats
        self._trajectories: OrderedDict[bytes, Trajectory] = OrderedDict()

    def __call__(self, latents: np.ndarray, timestep: np.ndarray, text: TextEmbeddings,
                 guidance: np.ndarray | None = None) -> np.ndarray:
        latents = check_latents(latents, self.config.in_channels)
        if not isinstance(text, TextEmbeddings):
            raise ContractError(f"text: expected TextEmbeddings, got {type(text).__name__}")
        batch = latents.shape[0]
        steps = check_batch_vector(timestep, batch, "timestep")
        scale = check_batch_vector(guidance, batch, "guidance") if (
            self.config.guidance_embeds and guidance is not None) else None
        key = _digest(np.array(latents.shape), text.hidden_states, text.attention_mask, text.pooled, scale)
        latents_digest = _digest(latents)
        trajectory = self._trajectories.get(key)
        if trajectory is None or bool(np.any(steps > trajectory.timestep)) or (
                np.array_equal(steps, trajectory.timestep) and latents_digest == trajectory.latents_digest):
            trajectory = Trajectory()
        self.network.trajectory = trajectory
        velocity = super().__call__(latents, timestep, text, guidance)
        trajectory.timestep, trajectory.latents_digest = steps, latents_digest
        self._trajectories[key] = trajectory
        self._trajectories.move_to_end(key)
        while len(self._trajectories) > TRAJECTORIES:
            self._trajectories.popitem(last=False)
        return velocity


def build(config: FirstBlockCacheTransformerConfig, weights: Path | None) -> FirstBlockCacheTransformer:
    """The registered factory."""
    return FirstBlockCacheTransformer(config, weights)
