"""What the cached backbones (``-fbcache``, ``-teacache``) share: the transformer's cells run by a network
that keeps a cache per denoising trajectory, the choice of that trajectory at each call, and the counts.

Trajectories. A cached residual is only worth reusing between neighbouring steps of one denoising
trajectory. diffusers keeps one state per named cache context (``"cond"``, ``"uncond"``) and its pipeline
resets them after each generation; the backbone contract has neither, so the state is keyed by what stays
fixed along a trajectory: the text embeddings (by content), the latents' shape, the guidance and the
conditioning image's latents, if any. A call
starts its trajectory afresh when its timestep is higher than the previous call's (a new schedule) or when
it repeats the previous call (same timestep and latents, which no sampler does, so equal inputs give
equal outputs). A repeated timestep with new latents continues it: Heun's corrector and the next
predictor share a timestep. The ``TRAJECTORIES`` most recently used are kept: a prompt and, under true
CFG, its negative, called alternately at each step.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mindspore import Tensor, nn

from contracts import ContractError, TextEmbeddings, check_batch_vector
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D

TRAJECTORIES = 2
# The transformer network's cells a cached network shares, under the same names (so the same parameter names).
NETWORK_CELLS = ("x_embedder", "context_embedder", "time_text_embed", "transformer_blocks",
                 "single_transformer_blocks", "norm_out", "proj_out")


@dataclass
class CacheStats:
    """Counts over the backbone's life. ``last_change`` is the relative change the cache measured at the
    last call, None when that call had nothing to compare with (or, for TeaCache, was always computed)."""

    calls: int = 0
    skipped: int = 0
    last_change: float | None = None
    last_skipped: bool = False

    def record(self, change: float | None, skipped: bool) -> None:
        self.calls, self.skipped = self.calls + 1, self.skipped + skipped
        self.last_change, self.last_skipped = change, skipped


class CachedNetwork(nn.Cell):
    """The transformer network's cells (shared: same parameters, same names) with ``trajectory``, the cache
    state of the trajectory being extended, and ``stats``; called as ``HunyuanVideoTransformer3D`` is.
    Subclasses define ``new_trajectory`` and ``cached_blocks``."""

    def __init__(self, network: HunyuanVideoTransformer3D) -> None:
        super().__init__()
        for name in NETWORK_CELLS:
            setattr(self, name, getattr(network, name))
        self.heads = network.heads
        self.trajectory = self.new_trajectory()
        self.stats = CacheStats()

    def new_trajectory(self) -> Any:
        """The cache state of a trajectory that has not started."""
        raise NotImplementedError

    def construct(self, patches: Tensor, timestep_sin: Tensor, guidance_sin: Tensor | None, text: Tensor,
                  real: Tensor, pooled: Tensor, cos: Tensor, sin: Tensor, text_mask: Tensor | None,
                  joint_mask: Tensor | None, zero_sin: Tensor | None = None, replaced: int = 0) -> Tensor:
        """The network's own embedding and output steps, on the shared cells, around ``cached_blocks``."""
        video, text, temb, cos, sin = HunyuanVideoTransformer3D.embed(
            self, patches, timestep_sin, guidance_sin, text, real, pooled, cos, sin, text_mask)
        replace_temb = None if zero_sin is None else self.time_text_embed.token_replace(zero_sin, pooled)
        video = self.cached_blocks(video, text, temb, cos, sin, joint_mask, replace_temb, replaced)
        return self.proj_out(self.norm_out(video, temb))

    def cached_blocks(self, video: Tensor, text: Tensor, temb: Tensor, cos: Tensor, sin: Tensor,
                      joint_mask: Tensor | None, replace_temb: Tensor | None, replaced: int) -> Tensor:
        """The video stream after the blocks (arguments as ``HunyuanVideoTransformer3D.run_blocks``'),
        computed or taken from ``self.trajectory``'s cache."""
        raise NotImplementedError


@dataclass
class _Entry:
    """A trajectory's cache state, and the call that last extended it."""

    state: Any
    timestep: np.ndarray
    latents_digest: bytes


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


class CachedTransformer(HunyuanVideoTransformer):
    """``backbone(latents, timestep, text, guidance=None, image=None) -> velocity`` through a ``CachedNetwork`` built by
    ``cached(network, config)``, whose trajectory is chosen before each call.

    ``stats`` counts the calls and the calls that skipped blocks.
    """

    def __init__(self, config: HunyuanVideoTransformerConfig, weights: Path | None,
                 cached: Callable[[HunyuanVideoTransformer3D, Any], CachedNetwork]) -> None:
        super().__init__(config, weights)
        self.network = cached(self.network, config)
        self.stats = self.network.stats
        self._trajectories: OrderedDict[bytes, _Entry] = OrderedDict()

    def __call__(self, latents: np.ndarray, timestep: np.ndarray, text: TextEmbeddings,
                 guidance: np.ndarray | None = None, image: np.ndarray | None = None) -> np.ndarray:
        latents = self._check_latents(latents)
        if not isinstance(text, TextEmbeddings):
            raise ContractError(f"text: expected TextEmbeddings, got {type(text).__name__}")
        batch = latents.shape[0]
        steps = check_batch_vector(timestep, batch, "timestep")
        scale = check_batch_vector(guidance, batch, "guidance") if (
            self.config.guidance_embeds and guidance is not None) else None
        key = _digest(np.array(latents.shape), text.hidden_states, text.attention_mask, text.pooled, scale,
                      None if image is None else np.asarray(image))
        latents_digest = _digest(latents)
        entry = self._trajectories.get(key)
        if entry is None or bool(np.any(steps > entry.timestep)) or (
                np.array_equal(steps, entry.timestep) and latents_digest == entry.latents_digest):
            entry = _Entry(self.network.new_trajectory(), steps, latents_digest)
        self.network.trajectory = entry.state
        velocity = super().__call__(latents, timestep, text, guidance, image)
        entry.timestep, entry.latents_digest = steps, latents_digest
        self._trajectories[key] = entry
        self._trajectories.move_to_end(key)
        while len(self._trajectories) > TRAJECTORIES:
            self._trajectories.popitem(last=False)
        return velocity
