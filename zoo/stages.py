"""Wall time, peak memory and bytes read, per stage of a run (Linux ``/proc``; zeros elsewhere)."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    peak_rss_bytes: int  # the process's peak resident memory during the stage
    read_bytes: int  # bytes this process caused to be read from storage (page cache hits excluded)

    def line(self) -> str:
        return (f"{self.name}: {self.seconds:.1f} s, peak RSS {self.peak_rss_bytes / 2**30:.2f} GiB, "
                f"read {self.read_bytes / 2**30:.2f} GiB")


def _proc_value(path: str, key: str, scale: int = 1) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(key):
                    return int(line.split()[1]) * scale
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Restart the kernel's peak-RSS counter (``VmHWM``), so a stage's peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak(resettable: bool) -> int:
    if resettable:
        return _proc_value("/proc/self/status", "VmHWM:", 1024)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the run's peak so far


@dataclass
class StageLog:
    """The stages of a run in order; ``verbose`` prints each as it ends, on stderr, and ``path``
    (a JSON file) is rewritten after each, with ``extra`` at its top level, so a run that is
    stopped midway still leaves the figures of the stages it finished."""

    verbose: bool = False
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        resettable = _reset_peak()
        read = _proc_value("/proc/self/io", "read_bytes:")
        start = time.perf_counter()
        yield
        stage = Stage(name, time.perf_counter() - start, _peak(resettable),
                      _proc_value("/proc/self/io", "read_bytes:") - read)
        self.stages.append(stage)
        if self.verbose:
            print(stage.line(), file=sys.stderr)
        if self.path is not None:
            staging = self.path.with_name(f".{self.path.name}.partial")
            staging.write_text(json.dumps({**self.extra, **self.as_dict()}, indent=2))
            os.replace(staging, self.path)

    def as_dict(self) -> dict:
        return {"stages": [asdict(s) for s in self.stages],
                "peak_rss_bytes": max((s.peak_rss_bytes for s in self.stages), default=0)}
