"""Forward time of ``hunyuanvideo-transformer`` beside diffusers' fp32
``HunyuanVideoTransformer3DModel``, same weights, same inputs, measured in one run.

The default is the bench-medium configuration: 12 heads x 128, 2 dual + 2 single
blocks, latents 16 x 5 x 32 x 32 (1280 video tokens), 256 text tokens of width 4096::

    GLOG_v=3 python benchmarks/bench_backbone.py [--repeats 3] [--real-tokens 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from diffusers import HunyuanVideoTransformer3DModel

import zoo
from contracts import TextEmbeddings

BENCH_MEDIUM = dict(num_attention_heads=12, attention_head_dim=128, num_layers=2, num_single_layers=2)
LATENTS = (1, 16, 5, 32, 32)
TEXT_TOKENS = 256


def seconds(run: Callable[[], object], repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def listing(times: list[float]) -> str:
    return ", ".join(f"{t:.3f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-tokens", type=int, default=TEXT_TOKENS,
                        help="real (unpadded) text tokens out of 256")
    args = parser.parse_args()

    torch.manual_seed(0)
    reference = HunyuanVideoTransformer3DModel(**BENCH_MEDIUM).eval()
    rng = np.random.default_rng(0)
    latents = rng.standard_normal(LATENTS, dtype=np.float32)
    hidden = rng.standard_normal((1, TEXT_TOKENS, 4096), dtype=np.float32)
    mask = np.arange(TEXT_TOKENS)[None, :] < args.real_tokens
    pooled = rng.standard_normal((1, 768), dtype=np.float32)
    timestep, scale = np.array([700.0], np.float32), 6.0
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
    text = TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)

    inputs = dict(hidden_states=torch.from_numpy(latents), timestep=torch.from_numpy(timestep),
                  encoder_hidden_states=torch.from_numpy(hidden), encoder_attention_mask=torch.from_numpy(mask),
                  pooled_projections=torch.from_numpy(pooled), guidance=torch.tensor([scale]) * 1000.0,
                  return_dict=False)

    def run_reference() -> np.ndarray:
        with torch.no_grad():
            return reference(**inputs)[0].numpy()

    def run_ours() -> np.ndarray:
        return ours(latents, timestep, text, guidance=scale)

    diff = float(np.abs(run_ours() - run_reference()).max())
    theirs_s = seconds(run_reference, args.repeats)
    ours_s = seconds(run_ours, args.repeats)
    print(f"bench-medium: 12x128 heads, 2 dual + 2 single blocks, latents {LATENTS}, "
          f"{TEXT_TOKENS} text tokens ({args.real_tokens} real), fp32, torch threads {torch.get_num_threads()}")
    print(f"diffusers (torch): median {statistics.median(theirs_s):.3f} s  ({listing(theirs_s)})")
    print(f"ours (MindSpore):  median {statistics.median(ours_s):.3f} s  ({listing(ours_s)})")
    print(f"ratio ours/diffusers: {statistics.median(ours_s) / statistics.median(theirs_s):.2f}; "
          f"max abs diff {diff:.3g}")


if __name__ == "__main__":
    main()
