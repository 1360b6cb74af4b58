"""Peak memory (RSS) of decoding videos of growing length and size with the HunyuanVideo VAE.

Every measurement runs in a fresh Python process, which builds the VAE (random
weights: memory does not depend on their values), decodes random latents once and
reports its peak resident set size before and after decoding. Three ways to decode:

- ``whole``: the whole video in one pass (no frame windows, no tiles);
- ``framewise``: diffusers' default, overlapping windows of 16 frames;
- ``tiled``: ``enable_tiling(...)``, windows of frames and of pixels.

Usage (small scale, minutes on 2 cores)::

    GLOG_v=3 python benchmarks/bench_vae_memory.py --widths 16 32 64 64 \\
        --frames 9 17 33 --sizes 64 128 --tile 64 --tile-stride 48

``--widths 128 256 512 512 --layers 2 --groups 32`` is the real HunyuanVideo VAE.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODES = ("whole", "framewise", "tiled")


def _rss_peak_mib() -> float:
    """The process's peak resident set size so far (VmHWM), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def measure(args: argparse.Namespace) -> dict:
    """Build, decode once, report (runs in the child process)."""
    import numpy as np

    import zoo

    blocks = len(args.widths)
    vae = zoo.load_component(
        "autoencoder", "hunyuanvideo-vae", block_out_channels=tuple(args.widths),
        down_block_types=("HunyuanVideoDownBlock3D",) * blocks,
        up_block_types=("HunyuanVideoUpBlock3D",) * blocks,
        layers_per_block=args.layers, norm_num_groups=args.groups,
    )
    config = vae.config
    if args.mode == "whole":
        vae.use_framewise_decoding = False
    elif args.mode == "tiled":
        vae.enable_tiling(tile_sample_min_height=args.tile, tile_sample_min_width=args.tile,
                          tile_sample_stride_height=args.tile_stride, tile_sample_stride_width=args.tile_stride)
    s, t = config.spatial_compression, config.temporal_compression
    shape = (1, config.latent_channels, (args.frame_count - 1) // t + 1, args.size // s, args.size // s)
    latents = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    before = _rss_peak_mib()
    start = time.perf_counter()
    video = vae.decode(latents)
    seconds = time.perf_counter() - start
    return {"mode": args.mode, "frames": args.frame_count, "size": args.size,
            "video_mib": video.nbytes / 2**20, "peak_before_mib": before, "peak_mib": _rss_peak_mib(),
            "seconds": seconds}


def run_child(args: argparse.Namespace, mode: str, frames: int, size: int) -> dict:
    command = [sys.executable, __file__, "--child", "--mode", mode, "--frame-count", str(frames),
               "--size", str(size), "--widths", *map(str, args.widths), "--layers", str(args.layers),
               "--groups", str(args.groups), "--tile", str(args.tile), "--tile-stride", str(args.tile_stride)]
    env = {**os.environ, "GLOG_v": os.environ.get("GLOG_v", "3")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"mode": mode, "frames": frames, "size": size, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 64],
                        help="block_out_channels (default: a small VAE)")
    parser.add_argument("--layers", type=int, default=1, help="layers_per_block")
    parser.add_argument("--groups", type=int, default=8, help="norm_num_groups")
    parser.add_argument("--frames", type=int, nargs="+", default=[9, 17, 33], help="video lengths (4k+1)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square sizes (multiples of 8)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--tile", type=int, default=64, help="tile_sample_min_height/width when tiled")
    parser.add_argument("--tile-stride", type=int, default=48, help="tile_sample_stride_height/width")
    parser.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--frame-count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args)))
        return

    print(f"# VAE widths={args.widths} layers={args.layers} groups={args.groups}; "
          f"tiles {args.tile}px every {args.tile_stride}px; each row a fresh process")
    if not args.json:
        print(f"{'mode':>10} {'frames':>6} {'size':>5} {'video MiB':>9} {'peak before':>11} "
              f"{'peak':>8} {'decode adds':>11} {'seconds':>8}")
    for mode in args.modes:
        for size in args.sizes:
            for frames in args.frames:
                row = run_child(args, mode, frames, size)
                if args.json or "error" in row:
                    print(json.dumps(row), flush=True)
                    continue
                print(f"{mode:>10} {frames:>6} {size:>5} {row['video_mib']:>9.1f} "
                      f"{row['peak_before_mib']:>9.0f}Mi {row['peak_mib']:>6.0f}Mi "
                      f"{row['peak_mib'] - row['peak_before_mib']:>9.0f}Mi {row['seconds']:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
