"""Time and peak memory of loading a transformer checkpoint: ``hunyuanvideo-transformer``
beside diffusers' ``HunyuanVideoTransformer3DModel.from_pretrained``, against the
checkpoint's bytes.

A random checkpoint (default: HunyuanVideo's real width, 24 heads x 128, with 2 dual +
2 single blocks, about 4 GB in fp32) is written by diffusers' ``save_pretrained`` as
sharded safetensors into a temporary folder. Each load then runs in a fresh Python
process, alternating ours and diffusers' for ``--repeats`` rounds, which reports its
resident set size after imports (the baseline), its peak (``ru_maxrss``) after loading,
and the load's wall time::

    GLOG_v=3 python benchmarks/bench_loading.py [--heads 24] [--layers 2] [--single-layers 2] [--repeats 2]

The figure that matters is (peak - baseline) / checkpoint bytes: 1.0 would be the weights
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Run inside each child: import, note the baseline, load, report.
CHILD = """
import json, resource, sys, time
from pathlib import Path

def rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

which, folder = sys.argv[1], sys.argv[2]
if which == "ours":
    import zoo
    from plugins.hunyuanvideo_transformer import backbone  # noqa: F401  (the import, not the load)
    load = lambda: zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
else:
    import torch
    from diffusers import HunyuanVideoTransformer3DModel
    load = lambda: HunyuanVideoTransformer3DModel.from_pretrained(folder)
baseline = rss_mib()
start = time.perf_counter()
model = load()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(dict(baseline=baseline, peak=peak, after=rss_mib(), seconds=seconds)))
"""


def checkpoint_bytes(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.glob("*.safetensors"))


def make_checkpoint(folder: Path, heads: int, layers: int, single_layers: int) -> None:
    """A random fp32 checkpoint in sharded safetensors, written in a child process so that
    this one stays small."""
    script = (
        "import sys, torch\n"
        "from diffusers import HunyuanVideoTransformer3DModel\n"
        "torch.manual_seed(0)\n"
        f"model = HunyuanVideoTransformer3DModel(num_attention_heads={heads}, attention_head_dim=128, "
        f"num_layers={layers}, num_single_layers={single_layers})\n"
        "model.save_pretrained(sys.argv[1], max_shard_size='1GB')\n"
    )
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True)


def measure(which: str, folder: Path) -> dict:
    env = {**os.environ, "GLOG_v": "3"}
    done = subprocess.run([sys.executable, "-c", CHILD, which, str(folder)], check=True, capture_output=True,
                          text=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", type=int, default=24, help="attention heads of 128 channels")
    parser.add_argument("--layers", type=int, default=2, help="dual-stream blocks")
    parser.add_argument("--single-layers", type=int, default=2, help="single-stream blocks")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print("command: GLOG_v=3 python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores; {load()} at start")
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        make_checkpoint(folder, args.heads, args.layers, args.single_layers)
        size = checkpoint_bytes(folder)
        shards = len(list(folder.glob("*.safetensors")))
        print(f"checkpoint: {args.heads}x128 heads, {args.layers} dual + {args.single_layers} single blocks, "
              f"{size / 2**30:.2f} GiB fp32 in {shards} safetensors shards")
        results: dict[str, list[dict]] = {"ours": [], "diffusers": []}
        for _ in range(args.repeats):
            for which in results:
                results[which].append(measure(which, folder))
    mib = size / 2**20
    summary = {}
    for which, runs in results.items():
        above = [run["peak"] - run["baseline"] for run in runs]
        seconds = [run["seconds"] for run in runs]
        summary[which] = (statistics.median(above), statistics.median(seconds))
        peak = statistics.median(run["peak"] for run in runs)
        baseline = statistics.median(run["baseline"] for run in runs)
        print(f"{which:10s} load {summary[which][1]:6.2f} s ({', '.join(f'{s:.2f}' for s in seconds)}); "
              f"peak RSS {peak:6.0f} MiB, baseline after imports {baseline:5.0f} MiB, peak above baseline "
              f"{summary[which][0]:6.0f} MiB = {summary[which][0] / mib:.2f}x the checkpoint "
              f"({', '.join(f'{a / mib:.2f}' for a in above)})")
    print(f"ratio ours/diffusers: time {summary['ours'][1] / summary['diffusers'][1]:.2f}, "
          f"peak above baseline {summary['ours'][0] / summary['diffusers'][0]:.2f}")
    print(f"{load()} at end")


if __name__ == "__main__":
    main()
