"""Run under ``msrun`` by ``test_parallel``: each worker builds the parallel backbone of every case
folder (``case_*/transformer``), calls it on the case's inputs (``inputs.npz``) and writes its
velocity to ``velocity_<rank>.npy`` there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from contracts import TextEmbeddings
from plugins.hunyuanvideo_parallel.backbone import ParallelTransformer
from plugins.hunyuanvideo_parallel.comm import world
from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig


def main(root: Path) -> None:
    group = world()
    for case in sorted(root.glob("case_*")):
        config = ParallelTransformerConfig(**json.loads((case / "transformer" / "config.json").read_text()))
        backbone = ParallelTransformer(config, case / "transformer")
        inputs = np.load(case / "inputs.npz")
        text = TextEmbeddings(hidden_states=inputs["hidden"], attention_mask=inputs["mask"], pooled=inputs["pooled"])
        guidance = inputs["guidance"] if "guidance" in inputs else None
        # Only rank 0's latents count: the others pass zeros, which the backbone must replace with rank 0's.
        latents = inputs["latents"] if group.rank == 0 else np.zeros_like(inputs["latents"])
        velocity = backbone(latents, inputs["timestep"], text, guidance)
        np.save(case / f"velocity_{group.rank}.npy", velocity)
        (case / f"held_{group.rank}.json").write_text(json.dumps(backbone.held_bytes))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
