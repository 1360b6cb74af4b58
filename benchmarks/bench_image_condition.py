"""What image conditioning costs the backbone: one forward of ``hunyuanvideo-transformer`` as text to
video, SkyReels-V1 (32-channel concat), HunyuanVideo-I2V ``latent_concat`` (33 channels) and
``token_replace`` (first-frame modulation), each beside diffusers' ``HunyuanVideoTransformer3DModel``
with the same weights and inputs, fp32, measured in one run, interleaved.

The configuration is bench_backbone's bench-medium (12 heads x 128, 2 dual + 2 single blocks,
latents 16 x 5 x 32 x 32, 256 text tokens of width 4096)::

    GLOG_v=3 python benchmarks/bench_image_condition.py [--repeats 3] [--threads 2]

Every figure is a median over rounds that take turns; the comparison is the ratio to diffusers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np
import torch
from diffusers import HunyuanVideoTransformer3DModel

sys.path.insert(0, os.path.dirname(__file__))
from bench_backbone import BENCH_MEDIUM, LATENTS, TEXT_TOKENS, interleaved  # noqa: E402

import zoo  # noqa: E402
from contracts import TextEmbeddings  # noqa: E402

VARIANTS = {
    "text to video": dict(in_channels=16),
    "skyreels concat": dict(in_channels=32),
    "i2v latent_concat": dict(in_channels=33, image_condition_type="latent_concat"),
    "i2v token_replace": dict(in_channels=16, image_condition_type="token_replace"),
}


def reference_input(variant: dict, latents: np.ndarray, image: np.ndarray) -> np.ndarray:
    """What diffusers' pipelines hand the transformer for this variant."""
    if variant.get("image_condition_type") == "token_replace":
        return np.concatenate([image, latents[:, :, 1:]], axis=2)
    if variant["in_channels"] == latents.shape[1]:
        return latents
    condition = np.zeros_like(latents)
    condition[:, :, :1] = image
    parts = [latents, condition]
    if variant["in_channels"] == 2 * latents.shape[1] + 1:
        mask = np.zeros_like(latents[:, :1])
        mask[:, :, 0] = 1
        parts.append(mask)
    return np.concatenate(parts, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    latents = rng.standard_normal(LATENTS, dtype=np.float32)
    image = rng.standard_normal((*LATENTS[:2], 1, *LATENTS[3:]), dtype=np.float32)
    hidden = rng.standard_normal((1, TEXT_TOKENS, 4096), dtype=np.float32)
    mask = np.ones((1, TEXT_TOKENS), bool)
    pooled = rng.standard_normal((1, 768), dtype=np.float32)
    text = TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)
    timestep, guidance = np.array([500.0], np.float32), np.float32(6.0)
    runs = {}
    for name, variant in VARIANTS.items():
        torch.manual_seed(0)
        reference = HunyuanVideoTransformer3DModel(**BENCH_MEDIUM, out_channels=16, **variant).eval()
        with tempfile.TemporaryDirectory() as folder:
            reference.save_pretrained(folder)
            ours = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder, compute_dtype="float32")
        model_input = torch.from_numpy(reference_input(variant, latents, image))
        extra = {} if ours.config.image_conditioning == "none" else {"image": image}

        def run_ours(ours=ours, extra=extra) -> np.ndarray:
            return ours(latents, timestep, text, guidance, **extra)

        def run_reference(reference=reference, model_input=model_input) -> np.ndarray:
            with torch.no_grad():
                return reference(model_input, torch.from_numpy(timestep), torch.from_numpy(hidden),
                                 torch.from_numpy(mask), torch.from_numpy(pooled),
                                 guidance=torch.tensor([guidance * 1000.0]), return_dict=False)[0].numpy()

        difference = float(np.abs(run_ours() - run_reference()).max())
        print(f"{name}: max |ours - diffusers| = {difference:.2e}", flush=True)
        runs[f"{name} | ours"], runs[f"{name} | diffusers"] = run_ours, run_reference
    times = {name: statistics.median(values) for name, values in interleaved(runs, args.repeats).items()}
    print(f"\nforward, fp32, {args.threads} threads, median of {args.repeats} interleaved rounds")
    print(f"{'variant':<20} {'ours s':>8} {'diffusers s':>12} {'ours/diffusers':>15} {'ours/t2v ours':>14}")
    base = times["text to video | ours"]
    for name in VARIANTS:
        mine, theirs = times[f"{name} | ours"], times[f"{name} | diffusers"]
        print(f"{name:<20} {mine:>8.2f} {theirs:>12.2f} {mine / theirs:>15.2f} {mine / base:>14.2f}")


if __name__ == "__main__":
    main()
