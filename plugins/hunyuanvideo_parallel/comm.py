"""The process group the parallel backbone splits its work across: MindSpore's collectives, started
by ``msrun`` (one machine or several), or a group of one when the process was started any other way.

Measured on the CPU backend (MindSpore 2.10, 2 workers on one machine, see
``benchmarks/bench_parallel.py``): ``AllReduce``, ``AllGather`` and ``Broadcast`` have kernels,
``AlltoAll`` and ``ReduceScatter`` do not, and neither do the ``comm_func`` functions (``InnerComm*``).
Payloads are sent in pieces of at most ``CHUNK_BYTES``: a 32 MiB ``Broadcast`` failed there
(``CollectiveWait ... failed``) where 8 MiB pieces did not, and pieces cost no more per byte.
Every collective takes float32 (the kernels' common dtype); integers and masks travel as float32
values, exact below 2**24.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

from plugins.hunyuanvideo_parallel.config import THREADS_VARIABLE

CHUNK_BYTES = 8 << 20
MAX_DIMS = 6
HEADER = 64  # float32 values: a count, then per array its rank (-1: None) and MAX_DIMS sizes
COLLECTIVE_TIMEOUT_S = 3600


class ParallelError(ValueError):
    """A group that cannot work: workers that disagree on versions, a split that does not divide."""


def under_msrun() -> bool:
    """Whether ``msrun`` started this process: one of its workers (``MS_ROLE=MS_WORKER``) or its
    scheduler (``MS_SCHED``), which runs the same command and serves the workers from ``init()``
    to the end of the job, then exits."""
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")


@dataclass
class Traffic:
    """What this process handed to collectives: calls and payload bytes, per collective."""

    calls: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, nbytes: int) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.bytes[name] = self.bytes.get(name, 0) + nbytes

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())


def _pieces(rows: int, row_bytes: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``CHUNK_BYTES`` each (at least one row)."""
    step = max(1, CHUNK_BYTES // max(1, row_bytes))
    return [(start, min(rows, start + step)) for start in range(0, rows, step)] or [(0, 0)]


class Group:
    """``size`` processes, this one ``rank``; rank 0 is the one that talks to the user."""

    def __init__(self, rank: int = 0, size: int = 1) -> None:
        self.rank, self.size = rank, size
        self.traffic = Traffic()
        if size > 1:
            self._all_reduce = ops.AllReduce()
            self._all_gather = ops.AllGather()
            self._broadcast = ops.Broadcast(0)

    def all_reduce(self, x: Tensor) -> Tensor:
        """The sum of ``x`` over the group, on every rank."""
        if self.size == 1:
            return x
        dtype, shape = x.dtype, x.shape
        rows = x.astype(ms.float32).reshape(-1, shape[-1])
        self.traffic.add("AllReduce", rows.nbytes)
        parts = [self._all_reduce(rows[a:b]) for a, b in _pieces(rows.shape[0], rows.nbytes // max(1, rows.shape[0]))]
        out = parts[0] if len(parts) == 1 else ops.cat(parts)
        return out.reshape(shape).astype(dtype)

    def gather_last(self, x: Tensor) -> Tensor:
        """Each rank's ``x [..., k]`` side by side in rank order: ``[..., size * k]``."""
        if self.size == 1:
            return x
        dtype, shape = x.dtype, x.shape
        rows = x.astype(ms.float32).reshape(-1, shape[-1])
        self.traffic.add("AllGather", rows.nbytes)
        parts = [self._gathered(rows[a:b]) for a, b in _pieces(rows.shape[0], rows.nbytes // max(1, rows.shape[0]))]
        out = parts[0] if len(parts) == 1 else ops.cat(parts)
        return out.reshape(*shape[:-1], self.size * shape[-1]).astype(dtype)

    def _gathered(self, rows: Tensor) -> Tensor:
        """AllGather stacks along the first axis: ``[size * r, k]`` -> ``[r, size * k]``."""
        count, width = rows.shape
        stacked = self._all_gather(rows).reshape(self.size, count, width)
        return stacked.transpose(1, 0, 2).reshape(count, self.size * width)

    def broadcast(self, arrays: Sequence[np.ndarray | None] | None) -> list[np.ndarray | None]:
        """Rank 0's ``arrays`` (each None or of up to ``MAX_DIMS`` dimensions) on every rank, as float32;
        other ranks pass None. Two broadcasts: a header of the shapes, then every value at once."""
        if self.size == 1:
            return [None if a is None else np.asarray(a, np.float32) for a in arrays]
        header = np.zeros(HEADER, np.float32)
        if self.rank == 0:
            arrays = [None if a is None else np.asarray(a, np.float32) for a in arrays]
            if 1 + len(arrays) * (MAX_DIMS + 1) > HEADER or any(a is not None and a.ndim > MAX_DIMS for a in arrays):
                raise ParallelError(f"broadcast: at most {MAX_DIMS} dimensions and "
                                    f"{(HEADER - 1) // (MAX_DIMS + 1)} arrays at a time")
            header[0] = len(arrays)
            for i, a in enumerate(arrays):
                at = 1 + i * (MAX_DIMS + 1)
                header[at] = -1 if a is None else a.ndim
                if a is not None:
                    header[at + 1:at + 1 + a.ndim] = a.shape
        header = self._send(header)
        shapes = []
        for i in range(int(header[0])):
            at = 1 + i * (MAX_DIMS + 1)
            ndim = int(header[at])
            shapes.append(None if ndim < 0 else tuple(int(n) for n in header[at + 1:at + 1 + ndim]))
        total = sum(int(np.prod(shape)) for shape in shapes if shape is not None)
        values = (np.concatenate([a.reshape(-1) for a in arrays if a is not None] or [np.zeros(0, np.float32)])
                  if self.rank == 0 else np.zeros(total, np.float32))
        values = self._send(values)
        out, at = [], 0
        for shape in shapes:
            if shape is None:
                out.append(None)
                continue
            size = int(np.prod(shape))
            out.append(values[at:at + size].reshape(shape))
            at += size
        return out

    def _send(self, values: np.ndarray) -> np.ndarray:
        self.traffic.add("Broadcast", values.nbytes)
        if values.size == 0:
            return values
        parts = [self._broadcast((Tensor(values[a:b]),))[0].asnumpy() for a, b in _pieces(values.size, 4)]
        return np.concatenate(parts)

    def check_same_versions(self) -> None:
        """Refuse to run when the workers run different versions of the software that computes."""
        mine = versions()
        digest = hashlib.sha256(repr(mine).encode()).digest()
        fingerprint = np.frombuffer(digest[:6], np.uint16).astype(np.float32)
        everyone = self.gather_last(Tensor(fingerprint.reshape(1, -1))).asnumpy().reshape(self.size, -1)
        differing = [rank for rank in range(self.size) if not np.array_equal(everyone[rank], everyone[0])]
        if differing:
            raise ParallelError(f"worker(s) {differing} run other versions than worker 0 ({mine}); install the "
                                f"same hunyuan-zoo, MindSpore and NumPy on every machine")


def versions() -> str:
    """What must agree between workers: the package, MindSpore, NumPy, Python."""
    try:
        zoo_version = metadata.version("hunyuan-zoo")
    except metadata.PackageNotFoundError:
        zoo_version = "source"
    return (f"hunyuan-zoo {zoo_version}, mindspore {ms.__version__}, numpy {np.__version__}, "
            f"python {platform.python_version()}")


def _pin(cores: range) -> None:
    """Keep this process (every thread it has, and so those they start) on ``cores``. Two unpinned
    workers sharing 2 cores run small ops about 5x slower (2.4 ms against 0.5 ms per op, measured):
    MindSpore's runtime threads wait actively and take turns on both cores."""
    available = os.sched_getaffinity(0)
    wanted = set(cores) & available
    if not wanted or wanted == available:
        return
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), wanted)
        except OSError:  # a thread that has ended
            continue


@cache
def world() -> Group:
    """This process's group: every ``msrun`` worker (MindSpore's communication started once, and the
    workers' versions compared), or this process alone. In msrun's scheduler process it does not
    return: the scheduler serves the job and exits."""
    if not under_msrun():
        return Group()
    # A rank waits in a collective while rank 0 alone encodes or decodes (minutes at full size);
    # MindSpore's CPU collectives give up after 60 s unless told otherwise.
    os.environ.setdefault("MS_CPU_COMM_OP_TIMEOUT", str(COLLECTIVE_TIMEOUT_S))
    from mindspore.communication import get_group_size, get_rank, init

    init()
    group = Group(get_rank(), get_group_size())
    threads = os.environ.get(THREADS_VARIABLE, "")
    if threads.isdigit() and int(threads) > 0:
        ms.set_context(runtime_num_threads=int(threads))
        _pin(range(group.rank * int(threads), (group.rank + 1) * int(threads)))
    if group.size > 1:
        group.check_same_versions()
    return group
