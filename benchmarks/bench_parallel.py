"""The parallel backbone on 1 and on 2 processes of this machine: wall time per step, each process's
peak RSS, bytes exchanged per step, and the collectives' own cost.

For each configuration a random checkpoint is written (float32, the published widths or
bench-medium's, with few blocks), then the same script runs as a worker: once alone (1 process,
all cores) and once under ``msrun`` with 2 workers (each on its share of the cores). Each worker
builds ``hunyuanvideo-transformer-parallel`` from the checkpoint (its slices only), calls it once to
warm up and ``--steps`` times timed, with bench-medium's inputs (latents 16 x 5 x 32 x 32, 1280
video tokens, 256 text tokens). The 2-worker run also times AllReduce, AllGather and Broadcast
from 4 bytes to 32 MiB. Results go to ``--json``; the table is printed.

    GLOG_v=3 flock /tmp/heavy.lock python benchmarks/bench_parallel.py [--configs bench-medium real] [--steps 3]

Last, a model (a prediction, not a measurement) of the published 13B transformer's step on P
machines like this one: the split blocks' FLOPs shared by P, the rest repeated on each, at the
FLOP rate measured at the real width on 1 process; plus, per step, the collectives' count times
their latency and the ring AllReduce's ``2 (P-1)/P`` of the payload at the bytes per second that
the collectives reached here (a fit of the timings above), or at ``--link-gbit`` (a network that
the collectives would fill).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_backbone import forward_flops  # this folder is on the path when a benchmark runs

from plugins.hunyuanvideo_parallel.config import THREADS_VARIABLE

CONFIGS = {
    # bench_backbone's bench-medium: 12 heads x 128, 2 dual + 2 single blocks
    "bench-medium": dict(num_attention_heads=12, attention_head_dim=128, num_layers=2, num_single_layers=2),
    # the published width (24 heads x 128, MLP 4x, text 4096, pooled 768) with 1 block of each kind
    "real": dict(num_attention_heads=24, attention_head_dim=128, num_layers=1, num_single_layers=1),
}
LATENTS = (1, 16, 5, 32, 32)
TEXT_TOKENS = 256
SIZES = [4, 64 << 10, 1 << 20, 8 << 20, 32 << 20]
PUBLISHED = dict(num_layers=20, num_single_layers=40)  # with the defaults: 24 x 128 heads, MLP 4x
# Latents of the resolutions predicted: 61 frames at 320x512, 129 frames at 720x1280.
PREDICTED = {"61x320x512": (1, 16, 16, 40, 64), "129x720x1280": (1, 16, 33, 90, 160)}


def rss_peak() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def write_checkpoint(name: str, folder: Path) -> None:
    from plugins.common.weights import save_weights, seed_parameters
    from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
    from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D

    config = HunyuanVideoTransformerConfig(**CONFIGS[name])
    network = HunyuanVideoTransformer3D(config)
    seed_parameters(network, 0)
    save_weights(network, folder)
    (folder / "config.json").write_text(json.dumps(CONFIGS[name]))


def time_collectives(group) -> dict[str, dict[str, float]]:
    """Median seconds per call of each collective, by payload bytes (5 calls after 1 warm-up)."""
    from mindspore import Tensor

    out: dict[str, dict[str, float]] = {"AllReduce": {}, "AllGather": {}, "Broadcast": {}}
    for size in SIZES:
        rows = Tensor(np.ones((max(1, size // 4096), min(1024, size // 4)), np.float32))
        values = np.ones(size // 4, np.float32)
        runs = {"AllReduce": lambda rows=rows: group.all_reduce(rows).asnumpy(),
                "AllGather": lambda rows=rows: group.gather_last(rows).asnumpy(),
                "Broadcast": lambda values=values: group.broadcast([values if group.rank == 0 else None])}
        for name, run in runs.items():
            run()
            times = []
            for _ in range(5):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            out[name][str(size)] = float(np.median(times))
    return out


def missing_collectives() -> list[str]:
    """The collectives a token split would want that fail here ("Kernel select failed" on CPU)."""
    from mindspore import Tensor, ops

    x = Tensor(np.ones((4, 4), np.float32))
    missing = []
    runs = {"AlltoAll": lambda: ops.AlltoAll(2, 0, 0)(x), "ReduceScatter": lambda: ops.ReduceScatter()(x)}
    for name, run in runs.items():
        try:
            run().asnumpy()
        except RuntimeError:
            missing.append(name)
    return missing


def worker(args: argparse.Namespace) -> None:
    import mindspore as ms

    from contracts import TextEmbeddings
    from plugins.hunyuanvideo_parallel.backbone import ParallelTransformer
    from plugins.hunyuanvideo_parallel.comm import world
    from plugins.hunyuanvideo_parallel.config import ParallelTransformerConfig

    if args.threads:
        ms.set_context(runtime_num_threads=args.threads)
    group = world()
    started = time.time() - args.launched
    folder = Path(args.folder)
    config = ParallelTransformerConfig(**json.loads((folder / "config.json").read_text()))
    start = time.perf_counter()
    backbone = ParallelTransformer(config, folder)
    load_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    latents = rng.standard_normal(LATENTS, dtype=np.float32)
    text = TextEmbeddings(hidden_states=rng.standard_normal((1, TEXT_TOKENS, config.text_embed_dim), dtype=np.float32),
                          attention_mask=np.ones((1, TEXT_TOKENS), bool),
                          pooled=rng.standard_normal((1, config.pooled_projection_dim), dtype=np.float32))
    call = lambda: backbone(latents, np.array([500.0], np.float32), text, np.array([6.0], np.float32))  # noqa: E731
    velocity = call()
    before = backbone.group.traffic.total_bytes
    calls_before = sum(backbone.group.traffic.calls.values())
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        velocity = call()
        times.append(time.perf_counter() - start)
    result = dict(rank=group.rank, size=group.size, threads=ms.get_context("runtime_num_threads"),
                  startup_s=started, load_s=load_s, step_s=times, held_bytes=backbone.held_bytes,
                  peak_rss_bytes=rss_peak(),
                  exchanged_bytes_per_step=(backbone.group.traffic.total_bytes - before) / args.steps,
                  collectives_per_step=(sum(backbone.group.traffic.calls.values()) - calls_before) / args.steps,
                  velocity_checksum=float(np.abs(velocity).sum()))
    if group.size > 1:
        result["collectives"] = time_collectives(group)
        result["no_cpu_kernel"] = missing_collectives()
    np.save(Path(args.out) / f"velocity_{group.size}_{group.rank}.npy", velocity)
    (Path(args.out) / f"rank_{group.size}_{group.rank}.json").write_text(json.dumps(result))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(name: str, workers: int, folder: Path, out: Path, steps: int) -> list[dict]:
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    script = [sys.executable, __file__, "--as-worker", "--folder", str(folder), "--out", str(out),
              "--steps", str(steps), "--threads", str(threads), "--launched", str(time.time())]
    env = {**os.environ, "GLOG_v": "3", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           THREADS_VARIABLE: str(threads)}  # as zoo generate --devices sets it: each worker on its own cores
    if workers == 1:
        subprocess.run(script, check=True, env=env)
    else:
        logs = out / f"logs_{name}"
        msrun = [str(Path(sys.executable).parent / "msrun"), f"--worker_num={workers}", f"--local_worker_num={workers}",
                 "--master_addr=127.0.0.1", f"--master_port={free_port()}", f"--log_dir={logs}", "--join=True",
                 "python", *script[1:]]
        done = subprocess.run(msrun, env=env, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
            for log in sorted(logs.glob("*.log")):
                print(log.read_text()[-3000:], file=sys.stderr)
            raise SystemExit(f"msrun failed for {name}")
    return [json.loads((out / f"rank_{workers}_{rank}.json").read_text()) for rank in range(workers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", default="bench_parallel.json")
    parser.add_argument("--link-gbit", type=float, default=10.0, help="the network of the model's second estimate")
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.as_worker:
        worker(args)
        return
    results = {}
    for name in args.configs:
        work = Path(tempfile.mkdtemp(prefix=f"bench-parallel-{name}-"))
        try:
            write_checkpoint(name, work / "transformer")
            single = run(name, 1, work / "transformer", work, args.steps)
            pair = run(name, 2, work / "transformer", work, args.steps)
            difference = float(np.abs(np.load(work / "velocity_1_0.npy") - np.load(work / "velocity_2_0.npy")).max())
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results[name] = {"1": single, "2": pair, "max_abs_difference": difference}
        one = float(np.median(single[0]["step_s"]))
        print(f"\n{name} ({CONFIGS[name]}), latents {LATENTS}, {TEXT_TOKENS} text tokens; "
              f"N=2 vs N=1 velocity max |diff| {difference:.2e}")
        print("processes  rank  threads  step s (median)  vs N=1  peak RSS GiB  weights held GiB  "
              "exchanged MB/step  collectives/step  start-up s")
        for row in [*single, *pair]:
            step = float(np.median(row["step_s"]))
            print(f"{row['size']:>9}  {row['rank']:>4}  {row['threads']:>7}  {step:>15.2f}  {one / step:>6.2f}x  "
                  f"{row['peak_rss_bytes'] / 2**30:>12.2f}  {row['held_bytes'] / 2**30:>16.2f}  "
                  f"{row['exchanged_bytes_per_step'] / 2**20:>17.1f}  {row['collectives_per_step']:>16.0f}  "
                  f"{row['startup_s']:>10.1f}")
    collectives = next((r["2"][0]["collectives"] for r in results.values()), None)
    if collectives:
        print("\ncollectives, 2 workers on this machine: median ms per call by payload")
        print("payload     " + "  ".join(f"{name:>10}" for name in collectives))
        for size in SIZES:
            cells = "  ".join(f"{collectives[name][str(size)] * 1e3:>10.2f}" for name in collectives)
            print(f"{size:>10}  {cells}")
        print("no CPU kernel: " + (", ".join(next(iter(results.values()))["2"][0]["no_cpu_kernel"]) or "none"))
        if "real" in results:
            results["model"] = predict(results["real"], collectives, args.link_gbit)
    Path(args.json).write_text(json.dumps(results, indent=1))


def fit(collectives: dict[str, dict[str, float]]) -> tuple[float, float]:
    """AllReduce seconds per call as ``latency + bytes / rate``: least squares over the payloads timed."""
    sizes = np.array([int(size) for size in collectives["AllReduce"]], float)
    times = np.array(list(collectives["AllReduce"].values()))
    slope, latency = np.polyfit(sizes, times, 1)
    return max(float(latency), 0.0), 1.0 / float(slope)


def predict(real: dict, collectives: dict[str, dict[str, float]], link_gbit: float) -> dict:
    """The model described in the module's docstring, printed and returned."""
    from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig

    measured = HunyuanVideoTransformerConfig(**CONFIGS["real"])
    rate = forward_flops(measured, LATENTS, TEXT_TOKENS) / float(np.median(real["1"][0]["step_s"]))
    latency, measured_rate = fit(collectives)
    published = HunyuanVideoTransformerConfig(**PUBLISHED)
    no_blocks = HunyuanVideoTransformerConfig(num_layers=0, num_single_layers=0)
    dim = published.inner_dim
    print(f"\nmodel (a prediction): the published transformer (20 dual + 40 single blocks) on P machines like "
          f"this one; {rate / 1e9:.0f} GFLOP/s per machine (measured, real width, 1 process), AllReduce "
          f"{latency * 1e3:.1f} ms + bytes at {measured_rate / 2**20:.0f} MiB/s (fit here) or at {link_gbit:g} Gbit/s")
    print("latents              P  compute s  collectives  exchanged GiB  comm s (fit)  comm s (link)  "
          "step s (fit)  speed-up (fit)  speed-up (link)")
    out = {}
    for name, latents in PREDICTED.items():
        tokens = int(np.prod(latents[2:])) // 4 + TEXT_TOKENS
        total = forward_flops(published, latents, TEXT_TOKENS)
        repeated = forward_flops(no_blocks, latents, TEXT_TOKENS)
        payload = (2 * published.num_layers + published.num_single_layers) * tokens * dim * 4
        calls = 6 * published.num_layers + 2 * published.num_single_layers + 2
        one = total / rate
        for processes in (1, 2, 8):
            compute = (total - repeated) / (processes * rate) + repeated / rate
            moved = 2 * (processes - 1) / processes * payload
            comm_fit = 0.0 if processes == 1 else calls * latency + moved / measured_rate
            comm_link = 0.0 if processes == 1 else calls * latency + moved / (link_gbit * 1e9 / 8)
            print(f"{name:<18}  {processes:>2}  {compute:>9.0f}  {calls if processes > 1 else 0:>11}  "
                  f"{moved / 2**30:>13.1f}  {comm_fit:>12.0f}  {comm_link:>13.0f}  {compute + comm_fit:>12.0f}  "
                  f"{one / (compute + comm_fit):>14.2f}  {one / (compute + comm_link):>15.2f}")
            out[f"{name}/{processes}"] = dict(compute_s=compute, exchanged_bytes=moved, comm_fit_s=comm_fit,
                                              comm_link_s=comm_link)
    return out


if __name__ == "__main__":
    main()
