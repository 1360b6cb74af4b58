"""numpy work split over the machine's cores.

The VAE's layout work (padding, im2col, transposes, norms) runs in numpy, which moves
memory several times faster than MindSpore's strided slices, pads and transposes on
CPU, but on one thread; numpy releases the GIL while it copies and computes, so a few
Python threads put every core to work (the matrix products use them already, in
MindSpore's own threads).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="vae")


def parallel(size: int, work: Callable[[slice], object]) -> None:
    """``work`` on consecutive slices of ``range(size)``, one per core (fewer if ``size`` is smaller)."""
    parts = min(os.cpu_count() or 1, size)
    if parts <= 1:
        work(slice(0, size))
        return
    bounds = np.linspace(0, size, parts + 1).astype(int)
    for future in [_pool().submit(work, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]:
        future.result()
