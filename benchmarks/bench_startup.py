"""Cold start of the ``zoo`` console script beside ``python -c "import mindspore"``.

Each sample is the wall time of a fresh process, from launch to exit; the commands
take turns for ``--repeats`` rounds after one unmeasured round (which warms the disk
cache for both). ``zoo list`` must not import MindSpore, so it should start in a
fraction of MindSpore's import time::

    python benchmarks/bench_startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "GLOG_v": "3"})
    return time.perf_counter() - start


def zoo_script() -> str:
    """The console script next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("zoo")
    found = str(beside) if beside.is_file() else shutil.which("zoo")
    if found is None:
        raise SystemExit("the `zoo` console script is not installed (pip install -e .)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    commands = {
        "zoo list": [zoo_script(), "list"],
        "python -c 'import mindspore'": [sys.executable, "-c", "import mindspore"],
        "python -c 'pass'": [sys.executable, "-c", "pass"],
    }
    print("command: python " + " ".join(sys.argv))
    print(f"machine: {os.cpu_count()} cores; load average "
          + ", ".join(f"{value:.2f}" for value in os.getloadavg()) + " at start")
    for command in commands.values():
        wall(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall(command))
    median = {name: statistics.median(samples) for name, samples in times.items()}
    for name, samples in times.items():
        print(f"{name:30s} median {median[name]:.3f} s  ({', '.join(f'{t:.3f}' for t in samples)})")
    mindspore = median["python -c 'import mindspore'"]
    print(f"ratio zoo list / import mindspore: {median['zoo list'] / mindspore:.2f}")
    print("load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg()) + " at end")


if __name__ == "__main__":
    main()
