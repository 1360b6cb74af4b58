"""Running a model straight from its memory-mapped checkpoint (numpy and the standard library only).

A streamed parameter's storage is a view of the mapped safetensors file. Its layer widens
it to the compute dtype when it runs, which reads the pages through the page cache, and
the pages are then dropped from this process (``MADV_DONTNEED``): the page cache keeps
them while memory allows, so a checkpoint that fits is read from disk once, and one that
does not never holds more than a layer in this process. When a block's first tensor is
used, the next block's pages are asked for (``MADV_WILLNEED``), so the kernel reads them
while this block computes.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from plugins.common.checkpoint import _DTYPES, Checkpoint, CheckpointError, TensorRecord

_BLOCK = re.compile(r"^(.*?)\.(\d+)\.")  # "transformer_blocks.3.attn..." -> ("transformer_blocks", "3")


def block_of(name: str) -> tuple[str, int] | None:
    """The numbered block a parameter belongs to (its first numbered path component), if any."""
    match = _BLOCK.match(name)
    return (match[1], int(match[2])) if match else None


def _stamp(file: Path) -> tuple[int, int]:
    status = file.stat()
    return status.st_size, status.st_mtime_ns


class MappedCheckpoint:
    """The tensors of a checkpoint as read-only views of its memory-mapped files."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.records = checkpoint.records
        files = sorted({record.file for record in self.records.values()})
        self.stamps = {file: _stamp(file) for file in files}
        self.maps: dict[Path, mmap.mmap] = {}
        for file in files:
            with open(file, "rb") as handle:
                self.maps[file] = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.blocks: dict[tuple[str, int], list[str]] = {}
        for name in self.records:
            key = block_of(name)
            if key is not None:
                self.blocks.setdefault(key, []).append(name)
        self.current: tuple[str, int] | None = None

    def array(self, name: str) -> np.ndarray:
        """A view of tensor ``name`` in the mapped file, at its stored precision."""
        record = self.records[name]
        dtype = np.dtype(_DTYPES[record.dtype])
        count = (record.end - record.start) // dtype.itemsize
        view = np.frombuffer(self.maps[record.file], dtype=dtype, count=count, offset=record.start)
        return view.reshape(record.shape)

    def releaser(self, name: str) -> Callable[[], None]:
        """What a layer calls after widening ``name``: drop its pages; on entering a new block,
        check the files are unchanged and read the next block ahead."""

        def release() -> None:
            key = block_of(name)
            if key is not None and key != self.current:
                self.current = key
                self.check_unchanged()
                for following in self.blocks.get((key[0], key[1] + 1), []):
                    self._advise(self.records[following], "MADV_WILLNEED")
            self.drop(name)

        return release

    def drop(self, name: str) -> None:
        """Drop tensor ``name``'s pages from this process (the page cache may keep them)."""
        self._advise(self.records[name], "MADV_DONTNEED")

    def check_unchanged(self) -> None:
        """Refuse to go on when a mapped file was rewritten or truncated since it was mapped
        (reading a truncated mapping would kill the process)."""
        for file, stamp in self.stamps.items():
            try:
                now = _stamp(file)
            except OSError:
                now = None
            if now != stamp:
                raise CheckpointError(f"{file} changed while it was in use (streamed weights are read from "
                                      f"the file as the model runs); leave checkpoints untouched during a run")

    def _advise(self, record: TensorRecord, advice: str) -> None:
        flag = getattr(mmap, advice, None)
        if flag is None:  # not every platform has madvise
            return
        start = record.start - record.start % mmap.PAGESIZE
        self.maps[record.file].madvise(flag, start, record.end - start)
