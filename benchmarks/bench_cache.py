"""A denoising loop with and without caching: ``hunyuanvideo-transformer`` against
``hunyuanvideo-transformer-fbcache`` (first-block cache) and ``hunyuanvideo-transformer-teacache``
(TeaCache), each at a few thresholds, same weights, same inputs, in one run.

Each run is ``--steps`` steps of ``flow-match-euler`` (shift 7) from the same random latents with fixed
random text embeddings and embedded guidance 6.0. Reported per backbone: the loop's wall time and its
speed-up over the uncached loop (also in CPU time, steadier when other jobs share the cores), the
fraction of steps that skipped blocks, the median relative change the cache measured (fbcache: of the
first block's residual; teacache: of the modulated input, before rescaling), and the difference of the
final latents from the uncached ones (max abs, and relative to the uncached latents' max abs). A
threshold of 0 never skips: it measures the bookkeeping. TeaCache is told the number of steps, so it
always computes the first and the last.

The weights are diffusers' random initialisation, not a trained model's: how fast the residuals and
modulated inputs change between steps, and so what a threshold skips, differ on a trained checkpoint.

    GLOG_v=3 python benchmarks/bench_cache.py [--configs tiny medium] [--steps 30]
        [--fbcache 0.05 0.1] [--teacache 0.1 0.15] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import HunyuanVideoTransformer3DModel

import zoo
from contracts import TextEmbeddings
from zoo.tiny import TRANSFORMER as TINY


@dataclass(frozen=True)
class Setting:
    transformer: dict
    latents: tuple[int, ...]
    text_tokens: int


SETTINGS = {
    "tiny": Setting(TINY, (1, 16, 3, 8, 8), 256),  # the embedded preset's 9 frames at 64x64
    "medium": Setting(dict(num_attention_heads=12, attention_head_dim=128, num_layers=2, num_single_layers=2,
                           num_refiner_layers=2), (1, 16, 5, 32, 32), 256),
}
GUIDANCE = 6.0


@dataclass
class Run:
    seconds: list[float]  # wall time of each loop
    cpu: list[float]  # CPU time of this process (every thread) of each loop: steadier when other jobs share the cores
    latents: np.ndarray
    skipped: float | None  # fraction of calls that skipped, None for the uncached backbone
    change: float | None  # median relative change the cache measured


def denoise(backbone, start: np.ndarray, text: TextEmbeddings, steps: int) -> tuple[np.ndarray, list[float]]:
    """The sampling loop; returns the final latents and the cache's measured changes (if it has a cache)."""
    scheduler = zoo.load_component("scheduler", "flow-match-euler")
    schedule = scheduler.schedule(steps)
    sample, changes = start, []
    for index, timestep in enumerate(schedule.timesteps):
        velocity = backbone(sample, np.full((sample.shape[0],), timestep, np.float32), text, guidance=GUIDANCE)
        stats = getattr(backbone, "stats", None)
        if stats is not None and stats.last_change is not None:
            changes.append(stats.last_change)
        sample = scheduler.step(velocity, schedule, index, sample)
    return sample, changes


def bench(name: str, steps: int, fbcache: list[float], teacache: list[float], repeats: int) -> None:
    setting = SETTINGS[name]
    torch.manual_seed(0)
    reference = HunyuanVideoTransformer3DModel(**setting.transformer)
    config = reference.config
    rng = np.random.default_rng(0)
    start = rng.standard_normal(setting.latents, dtype=np.float32)
    text = TextEmbeddings(
        hidden_states=rng.standard_normal((1, setting.text_tokens, config.text_embed_dim), dtype=np.float32),
        attention_mask=np.ones((1, setting.text_tokens), bool),
        pooled=rng.standard_normal((1, config.pooled_projection_dim), dtype=np.float32))
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        del reference
        backbones = {"uncached": zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)}
        for threshold in fbcache:
            backbones[f"fbcache {threshold:g}"] = zoo.load_component(
                "backbone", "hunyuanvideo-transformer-fbcache", weights=folder, threshold=threshold)
        for threshold in teacache:
            backbones[f"teacache {threshold:g}"] = zoo.load_component(
                "backbone", "hunyuanvideo-transformer-teacache", weights=folder, rel_l1_thresh=threshold,
                num_steps=steps)

    for backbone in backbones.values():  # warm-up: a first call is slower
        backbone(start, np.array([1000.0], np.float32), text, guidance=GUIDANCE)
    runs: dict[str, Run] = {}
    for _ in range(repeats):  # round robin, so that load from other jobs spreads over every backbone
        for label, backbone in backbones.items():
            stats = getattr(backbone, "stats", None)
            calls, skipped = (stats.calls, stats.skipped) if stats is not None else (0, 0)
            began, began_cpu = time.perf_counter(), time.process_time()
            final, changes = denoise(backbone, start, text, steps)
            run = runs.setdefault(label, Run([], [], final, None, None))
            run.seconds.append(time.perf_counter() - began)
            run.cpu.append(time.process_time() - began_cpu)
            if stats is not None:
                run.skipped = (stats.skipped - skipped) / (stats.calls - calls)
                run.change = statistics.median(changes)

    print(f"\n{name}: {setting.transformer['num_attention_heads']}x{setting.transformer['attention_head_dim']} heads, "
          f"{setting.transformer['num_layers']} dual + {setting.transformer['num_single_layers']} single blocks, "
          f"latents {setting.latents}, {setting.text_tokens} text tokens, {steps} steps, fp32")
    base = runs["uncached"]
    base_wall, base_cpu = statistics.median(base.seconds), statistics.median(base.cpu)
    scale = float(np.abs(base.latents).max())
    print(f"{'backbone':<15}{'wall s':>8}{'x wall':>8}{'cpu s':>8}{'x cpu':>7}{'skipped':>9}{'change':>8}"
          f"{'max abs':>10}{'relative':>10}  wall times (s)")
    for label, run in runs.items():
        wall, cpu = statistics.median(run.seconds), statistics.median(run.cpu)
        diff = float(np.abs(run.latents - base.latents).max())
        skipped = "-" if run.skipped is None else f"{run.skipped:.0%}"
        change = "-" if run.change is None else f"{run.change:.3f}"
        print(f"{label:<15}{wall:>8.2f}{base_wall / wall:>8.2f}{cpu:>8.2f}{base_cpu / cpu:>7.2f}{skipped:>9}"
              f"{change:>8}{diff:>10.3g}{diff / scale:>10.3g}  {', '.join(f'{t:.2f}' for t in run.seconds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--fbcache", type=float, nargs="*", default=[0.05, 0.1], help="fbcache thresholds")
    parser.add_argument("--teacache", type=float, nargs="*", default=[0.1, 0.15], help="teacache rel_l1_thresh")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()} (diffusers only makes the weights)")
    for name in args.configs:
        bench(name, args.steps, args.fbcache, args.teacache, args.repeats)


if __name__ == "__main__":
    main()
