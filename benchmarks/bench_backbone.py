"""Forward time of ``hunyuanvideo-transformer`` beside diffusers' ``HunyuanVideoTransformer3DModel``
in fp32 and in bf16, same weights, same inputs, measured in one run, interleaved.

Ours runs in fp32 and, where the CPU has bf16 matmul instructions (AVX512_BF16 or AMX),
with bf16 matmuls (weights held in bf16, ``compute_dtype="bfloat16"``), and where it has
AMX-INT8 with int8 linear layers (``compute_dtype="int8"``); elsewhere those rows are left
out with the reason.

The default is the bench-medium configuration: 12 heads x 128, 2 dual + 2 single
blocks, 2 refiner blocks, latents 16 x 5 x 32 x 32 (1280 video tokens), 256 text
tokens of width 4096, pooled 768. ``--width real`` is HunyuanVideo's: 24 heads x 128,
1 dual + 1 single block. Besides the times it prints the forward's FLOPs (counted from
the config), the GFLOP/s each implementation achieves, and the dense fp32 matmul GFLOP/s
of MindSpore and of PyTorch on this machine, measured in the same run, as the ceiling::

    GLOG_v=3 python benchmarks/bench_backbone.py [--repeats 5] [--real-tokens 256] [--threads 2]
        [--width medium|real] [--latents T h w] [--text-tokens 256] [--ablation]

Other engineers' jobs share the cores, so every figure is a median over repeats that
take turns (one call of each implementation and of each peak matmul per round), and
the comparison is the ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import mindspore as ms
import numpy as np
import torch
from diffusers import HunyuanVideoTransformer3DModel
from mindspore import ops

import zoo
from contracts import TextEmbeddings
from plugins.common import int8
from plugins.common.layers import Linear
from plugins.common.onednn import bf16_unavailable
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from plugins.hunyuanvideo_transformer.model import WHOLE_ON_ONEDNN
from plugins.hunyuanvideo_transformer.tables import TIMESTEP_CHANNELS

BENCH_MEDIUM = dict(num_attention_heads=12, attention_head_dim=128, num_layers=2, num_single_layers=2)
REAL_WIDTH = dict(num_attention_heads=24, attention_head_dim=128, num_layers=1, num_single_layers=1)
WIDTHS = {"medium": BENCH_MEDIUM, "real": REAL_WIDTH}
LATENTS = (1, 16, 5, 32, 32)
TEXT_TOKENS = 256
# Matmul shapes (M, K, N) for the ceiling: the model's widest projections at bench-medium.
PEAK_SHAPES = ((1536, 1536, 6144), (1536, 6144, 1536), (2048, 2048, 2048))


def forward_flops(config: HunyuanVideoTransformerConfig, latents: tuple[int, ...], text_tokens: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward: every linear layer and both attention
    matmuls; norms, activations and rotary embedding are left out (they are O(tokens x width))."""
    batch, channels, frames, height, width = latents
    dim, mlp = config.inner_dim, int(config.inner_dim * config.mlp_ratio)
    patch = channels * config.patch_size_t * config.patch_size ** 2
    video = (frames // config.patch_size_t) * (height // config.patch_size) * (width // config.patch_size)
    joint = video + text_tokens

    def linear(tokens: int, fan_in: int, fan_out: int) -> int:
        return 2 * tokens * fan_in * fan_out

    def attention(queries: int, keys: int) -> int:
        return 2 * 2 * queries * keys * dim

    condition = linear(1, TIMESTEP_CHANNELS, dim) + linear(1, dim, dim)
    flops = linear(video, patch, dim)
    flops += condition + linear(1, config.pooled_projection_dim, dim) + linear(1, dim, dim)
    if config.guidance_embeds:
        flops += condition
    refiner_mlp = 4 * dim  # diffusers' refiner keeps its own MLP ratio of 4
    flops += condition + linear(1, config.text_embed_dim, dim) + linear(1, dim, dim)
    flops += linear(text_tokens, config.text_embed_dim, dim)
    flops += config.num_refiner_layers * (
        linear(1, dim, 2 * dim) + 4 * linear(text_tokens, dim, dim) + attention(text_tokens, text_tokens)
        + linear(text_tokens, dim, refiner_mlp) + linear(text_tokens, refiner_mlp, dim))
    flops += config.num_layers * (
        2 * linear(1, dim, 6 * dim) + 4 * linear(joint, dim, dim) + attention(joint, joint)
        + linear(joint, dim, mlp) + linear(joint, mlp, dim))
    flops += config.num_single_layers * (
        linear(1, dim, 3 * dim) + 3 * linear(joint, dim, dim) + attention(joint, joint)
        + linear(joint, dim, mlp) + linear(joint, dim + mlp, dim))
    flops += linear(1, dim, 2 * dim) + linear(video, dim, patch)
    return batch * flops


SETTLE = 0.15  # s before each timed call: MindSpore's actor thread spins for about 75 ms of CPU after an op,
# which would otherwise take a core from whichever contender runs next


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of ``repeats`` rounds, each calling every run once in turn, after one
    warm-up round."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(SETTLE)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def matmul_runs() -> dict[str, Callable[[], object]]:
    """One dense fp32 matmul of each ``PEAK_SHAPES`` in MindSpore and in PyTorch, named
    ``"<framework> MxKxN"``."""
    rng = np.random.default_rng(0)
    matmul = ops.MatMul()
    runs: dict[str, Callable[[], object]] = {}
    for m, k, n in PEAK_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ms_a, ms_b, torch_a, torch_b = ms.Tensor(a), ms.Tensor(b), torch.from_numpy(a), torch.from_numpy(b)
        runs[f"MindSpore {m}x{k}x{n}"] = lambda x=ms_a, y=ms_b: matmul(x, y).asnumpy()
        runs[f"PyTorch {m}x{k}x{n}"] = lambda x=torch_a, y=torch_b: torch.mm(x, y)
    return runs


def matmul_peaks(median: dict[str, float]) -> dict[str, float]:
    """The best GFLOP/s over ``PEAK_SHAPES`` of each framework, from median times."""
    return {framework: max(2 * m * k * n / median[f"{framework} {m}x{k}x{n}"] / 1e9 for m, k, n in PEAK_SHAPES)
            for framework in ("MindSpore", "PyTorch")}


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def parse_with_threads(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse with a ``--threads`` option, set MindSpore's and PyTorch's intra-op threads alike,
    and print the command and the machine, as every benchmark's output starts."""
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="intra-op threads, set alike for MindSpore and PyTorch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ms.set_context(runtime_num_threads=args.threads)
    print("command: GLOG_v=3 python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores; threads: MindSpore {ms.get_context('runtime_num_threads')}, "
          f"PyTorch {torch.get_num_threads()}; {load()} at start")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", choices=sorted(WIDTHS), default="medium")
    parser.add_argument("--latents", type=int, nargs=3, metavar=("T", "h", "w"), default=LATENTS[2:],
                        help="latent frames, height and width (16 channels)")
    parser.add_argument("--text-tokens", type=int, default=TEXT_TOKENS)
    parser.add_argument("--ablation", action="store_true",
                        help="also ours with bf16 linear layers only (attention and norms on the float32 path), "
                             "and with every layer on oneDNN but the blocks run cell by cell")
    parser.add_argument("--real-tokens", type=int, default=None,
                        help="real (unpadded) text tokens out of --text-tokens (default: all)")
    args = parse_with_threads(parser)

    torch.manual_seed(0)
    reference = HunyuanVideoTransformer3DModel(**WIDTHS[args.width]).eval()
    reference_bf16 = copy.deepcopy(reference).to(torch.bfloat16)
    shape = (1, 16, *args.latents)
    real_tokens = args.text_tokens if args.real_tokens is None else args.real_tokens
    rng = np.random.default_rng(0)
    latents = rng.standard_normal(shape, dtype=np.float32)
    hidden = rng.standard_normal((1, args.text_tokens, 4096), dtype=np.float32)
    mask = np.arange(args.text_tokens)[None, :] < real_tokens
    pooled = rng.standard_normal((1, 768), dtype=np.float32)
    timestep, scale = np.array([700.0], np.float32), 6.0
    bf16_missing, int8_missing = bf16_unavailable(), int8.unavailable()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = {"ours fp32": zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder,
                                                compute_dtype="float32")}
        if bf16_missing is None:
            ours["ours bf16"] = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder,
                                                   weight_dtype="bfloat16", compute_dtype="bfloat16")
        if int8_missing is None:
            ours["ours int8"] = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder,
                                                   weight_dtype="bfloat16", compute_dtype="int8")
        if bf16_missing is None and args.ablation:
            for name, off in (("ours bf16 linear", lambda cell: not isinstance(cell, Linear)),
                              ("ours bf16 cell by cell", lambda cell: isinstance(cell, WHOLE_ON_ONEDNN))):
                ours[name] = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder,
                                                weight_dtype="bfloat16", compute_dtype="bfloat16")
                for _, cell in ours[name].network.cells_and_names():
                    if hasattr(cell, "onednn_path") and off(cell):
                        cell.onednn_path = False
    text = TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)

    inputs = dict(hidden_states=torch.from_numpy(latents), timestep=torch.from_numpy(timestep),
                  encoder_hidden_states=torch.from_numpy(hidden), encoder_attention_mask=torch.from_numpy(mask),
                  pooled_projections=torch.from_numpy(pooled), guidance=torch.tensor([scale]) * 1000.0,
                  return_dict=False)
    inputs_bf16 = {name: value.to(torch.bfloat16) if torch.is_tensor(value) and value.is_floating_point() else value
                   for name, value in inputs.items()}

    def run_reference() -> np.ndarray:
        with torch.no_grad():
            return reference(**inputs)[0].numpy()

    def run_reference_bf16() -> np.ndarray:
        with torch.no_grad():
            return reference_bf16(**inputs_bf16)[0].float().numpy()

    forwards: dict[str, Callable[[], np.ndarray]] = {"diffusers fp32": run_reference,
                                                     "diffusers bf16": run_reference_bf16}
    for name, backbone in ours.items():
        forwards[name] = lambda backbone=backbone: backbone(latents, timestep, text, guidance=scale)
    expected = run_reference()
    differences = {name: float(np.abs(run() - expected).max()) for name, run in forwards.items()
                   if name != "diffusers fp32"}
    times = interleaved({**forwards, **matmul_runs()}, args.repeats)
    median = {name: statistics.median(samples) for name, samples in times.items()}
    peaks = matmul_peaks(median)
    config = ours["ours fp32"].config
    flops = forward_flops(config, shape, int(mask.any(axis=0).sum()))
    reference_flops = forward_flops(config, shape, args.text_tokens)

    video_tokens = int(np.prod(args.latents)) // config.patch_size ** 2
    print(f"{args.width} width: {config.num_attention_heads}x{config.attention_head_dim} heads, "
          f"{config.num_layers} dual + {config.num_single_layers} single blocks, latents {shape} "
          f"({video_tokens} video tokens), {args.text_tokens} text tokens ({real_tokens} real), "
          f"{args.repeats} interleaved rounds")
    if bf16_missing is not None:
        print(f"ours bf16 left out: {bf16_missing}")
    if int8_missing is not None:
        print(f"ours int8 left out: {int8_missing}")
    for name in forwards:
        samples = times[name]
        print(f"{name:22s} median {median[name]:7.3f} s  ({', '.join(f'{t:.3f}' for t in samples)})")
    best_reference = min(("diffusers fp32", "diffusers bf16"), key=median.__getitem__)
    best_ours = min(ours, key=median.__getitem__)
    print(f"best: {best_ours} / {best_reference} = {median[best_ours] / median[best_reference]:.2f}; "
          + "; ".join(f"{name} / {reference_name} = {median[name] / median[reference_name]:.2f}"
                      for name in ours for reference_name in ("diffusers fp32", "diffusers bf16")))
    print("max abs difference from diffusers fp32 (output max abs "
          f"{float(np.abs(expected).max()):.3g}): " + ", ".join(f"{name} {d:.3g}" for name, d in differences.items()))
    print(f"dense fp32 matmul peak: MindSpore {peaks['MindSpore']:.0f} GFLOP/s, "
          f"PyTorch {peaks['PyTorch']:.0f} GFLOP/s (best median over M x K x N in {PEAK_SHAPES}, "
          f"timed in the same rounds)")
    ours_rate = flops / median["ours fp32"] / 1e9
    reference_rate = reference_flops / median["diffusers fp32"] / 1e9
    print(f"forward FLOPs: ours {flops / 1e9:.1f} G, diffusers {reference_flops / 1e9:.1f} G "
          f"(diffusers attends to padding too)")
    print(f"achieved in fp32: ours {ours_rate:.0f} GFLOP/s = {ours_rate / peaks['MindSpore']:.2f} of MindSpore's "
          f"peak; diffusers {reference_rate:.0f} GFLOP/s = {reference_rate / peaks['PyTorch']:.2f} of PyTorch's peak")
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
