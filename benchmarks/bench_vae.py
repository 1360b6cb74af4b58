"""Decode and encode time of ``hunyuanvideo-vae`` beside diffusers' ``AutoencoderKLHunyuanVideo``
at the published width, fp32, same weights, same inputs, measured in one run, interleaved.

The architecture is diffusers' default config, HunyuanVideo's own: block widths 128,
256, 512, 512, 2 layers per block, 32 groups, 16 latent channels (random weights, drawn
by PyTorch's initialisers, loaded into ours from ``save_pretrained``). For each latent
shape it decodes the latents and encodes the video of the corresponding size
(``4(T-1)+1`` frames, 8x the height and width)::

    GLOG_v=3 python benchmarks/bench_vae.py [--repeats 3] [--threads 2] [--latents 1,16,2,8,8 1,16,3,16,16]

Other engineers' jobs share the cores, so every figure is a median over rounds that
take turns (one call of each contender per round, after a warm-up round), and the
comparison is the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from bench_backbone import interleaved, load, parse_with_threads  # this folder is on the path when a benchmark runs
from diffusers import AutoencoderKLHunyuanVideo

import zoo

LATENTS = ((1, 16, 2, 8, 8), (1, 16, 3, 16, 16))


def video_shape(latents: tuple[int, ...]) -> tuple[int, ...]:
    batch, _, frames, height, width = latents
    return batch, 3, 4 * (frames - 1) + 1, 8 * height, 8 * width


def shape_name(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def parse_shape(text: str) -> tuple[int, ...]:
    shape = tuple(int(part) for part in text.split(","))
    if len(shape) != 5:
        raise argparse.ArgumentTypeError(f"expected B,C,T,h,w, got {text!r}")
    return shape


def contenders(reference: AutoencoderKLHunyuanVideo, ours, latents: np.ndarray, video: np.ndarray):
    """(what, diffusers' call, our call) for decoding ``latents`` and encoding ``video``."""
    z, x = torch.from_numpy(latents), torch.from_numpy(video)

    def decode_reference() -> np.ndarray:
        with torch.no_grad():
            return reference.decode(z).sample.numpy()

    def encode_reference() -> np.ndarray:
        with torch.no_grad():
            return reference.encode(x).latent_dist.mean.numpy()

    return ((f"decode {shape_name(latents.shape)}", decode_reference, lambda: ours.decode(latents)),
            (f"encode {shape_name(video.shape)}", encode_reference, lambda: ours.encode(video)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latents", type=parse_shape, nargs="+", default=list(LATENTS),
                        help="latent shapes B,C,T,h,w (C=16)")
    args = parse_with_threads(parser)

    torch.manual_seed(0)
    reference = AutoencoderKLHunyuanVideo().eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=folder)

    rng = np.random.default_rng(0)
    runs: dict[str, Callable[[], np.ndarray]] = {}
    pairs: list[tuple[str, str, str]] = []  # (what, diffusers run, ours run)
    for shape in args.latents:
        latents = rng.standard_normal(shape, dtype=np.float32)
        video = rng.uniform(-1, 1, video_shape(shape)).astype(np.float32)
        for what, theirs, mine in contenders(reference, ours, latents, video):
            runs[f"{what} diffusers"], runs[f"{what} ours"] = theirs, mine
            pairs.append((what, f"{what} diffusers", f"{what} ours"))

    differences = {}
    for what, theirs, mine in pairs:
        expected = runs[theirs]()
        differences[what] = float(np.abs(runs[mine]() - expected).max()) / float(np.abs(expected).max())
    times = interleaved(runs, args.repeats)
    median = {name: statistics.median(samples) for name, samples in times.items()}

    print(f"real width: widths 128, 256, 512, 512, 2 layers per block, 32 groups; fp32; "
          f"{args.repeats} interleaved rounds after a warm-up")
    for what, theirs, mine in pairs:
        print(f"{what:28s} diffusers {median[theirs]:7.3f} s  ours {median[mine]:7.3f} s  "
              f"ours/diffusers {median[mine] / median[theirs]:5.2f}  "
              f"(max abs diff / scale {differences[what]:.1e}; rounds: ours "
              f"{', '.join(f'{t:.2f}' for t in times[mine])}; diffusers "
              f"{', '.join(f'{t:.2f}' for t in times[theirs])})")
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
