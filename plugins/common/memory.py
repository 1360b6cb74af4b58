"""How much memory a run may use (the standard library only)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re

BUDGET_VARIABLE = "HUNYUAN_ZOO_MEMORY"
_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "M": 1e6, "MB": 1e6, "MIB": 2**20,
          "G": 1e9, "GB": 1e9, "GIB": 2**30, "T": 1e12, "TB": 1e12, "TIB": 2**40}


class MemoryBudgetError(ValueError):
    """The memory budget cannot hold what a run needs."""


def parse_bytes(text: str) -> int:
    """``"16GiB"``, ``"500 MB"``, ``"1e9"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    if not match or match[2].upper() not in _UNITS:
        raise ValueError(f"{BUDGET_VARIABLE}={text!r}: expected a size such as 16GiB, 12GB or 800MiB")
    return int(float(match[1]) * _UNITS[match[2].upper()])


def available() -> int:
    """The memory budget in bytes: ``$HUNYUAN_ZOO_MEMORY`` if set, else what the machine has
    available now (``MemAvailable``: free memory plus page cache that can be dropped)."""
    if os.environ.get(BUDGET_VARIABLE):
        return parse_bytes(os.environ[BUDGET_VARIABLE])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def give_back() -> None:
    """Free what released objects held and return it to the system now: models hold reference
    cycles, and glibc keeps freed blocks smaller than its (adaptive, up to 32 MB) mmap
    threshold in its heap, where they still count as the process's memory."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
        if trim is not None:
            trim(0)
