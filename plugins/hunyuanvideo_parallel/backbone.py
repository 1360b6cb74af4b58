"""The ``hunyuanvideo-transformer-parallel`` backbone: ``hunyuanvideo-transformer`` with its blocks'
weights split across the processes ``msrun`` started (see ``split``), each process loading only its
slices. In a process of its own (not started by ``msrun``) it is the transformer, whole.

Every rank must call it with the same text; the latents, timestep, guidance and image are rank 0's,
sent to the others at each call (a few MB), so the ranks work on the same numbers even when their
own inputs differ (a seedless draw) and the result, on every rank, is the one rank 0 asked for.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
from mindspore.nn.utils import no_init_parameters

from contracts import TextEmbeddings
from plugins.common.runtime import apply_matmul_precision, compute_dtype, dispatch_synchronously_on_cpu
from plugins.common.weights import seed_parameters
from plugins.hunyuanvideo_parallel.comm import Group, ParallelError, world
from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig
from plugins.hunyuanvideo_parallel.loading import load_shards
from plugins.hunyuanvideo_parallel.split import split_network
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D

# Without a checkpoint every rank draws the same whole network from this seed, then keeps its slices.
SEED = 0


class ParallelTransformer(HunyuanVideoTransformer):
    """``backbone(latents, timestep, text, guidance=None, image=None) -> velocity``, computed by the
    whole group (every rank calls it, and every rank gets the velocity). ``group.traffic`` counts what
    this rank exchanged."""

    def __init__(self, config: ParallelTransformerConfig, weights: Path | None = None,
                 group: Group | None = None) -> None:
        dispatch_synchronously_on_cpu()
        self.group = group or world()
        if config.loras:
            raise ParallelError("hunyuanvideo-transformer-parallel takes no LoRA adapters (they would apply to "
                                "whole weights); merge them into the checkpoint or use hunyuanvideo-transformer")
        self.config = config
        self.dtype = compute_dtype(config.compute_dtype)
        with no_init_parameters() if weights is not None else nullcontext():
            self.network = HunyuanVideoTransformer3D(config)
        if weights is None:
            seed_parameters(self.network, SEED)
        self.network.set_train(False)
        split_network(self.network, config, self.group, copy=weights is None)
        self.held_bytes = 0
        if weights is not None:
            self.held_bytes = load_shards(self.network, weights, "HunyuanVideo transformer", config.weight_dtype)
        apply_matmul_precision(config.compute_dtype, self.network, "hunyuanvideo-transformer-parallel")
        self.streamed = False
        self.adapters = None
        self._rope = None

    def __call__(self, latents: np.ndarray, timestep: np.ndarray, text: TextEmbeddings,
                 guidance: np.ndarray | None = None, image: np.ndarray | None = None) -> np.ndarray:
        if self.group.size > 1:
            mine = None if self.group.rank else (latents, timestep, guidance, image)
            latents, timestep, guidance, image = self.group.broadcast(mine)
        extra = {} if image is None else {"image": image}
        return super().__call__(latents, timestep, text, guidance, **extra)

    def load_lora(self, path: str | Path, strength: float = 1.0, name: str | None = None) -> str:
        raise ParallelError("hunyuanvideo-transformer-parallel takes no LoRA adapters; use hunyuanvideo-transformer")


def build(config: ParallelTransformerConfig, weights: Path | None) -> ParallelTransformer:
    """The registered factory."""
    return ParallelTransformer(config, weights)
