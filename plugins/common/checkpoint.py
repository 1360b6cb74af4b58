"""Reading checkpoints: diffusers/transformers folders and single files, safetensors only.

A component folder holds ``config.json`` and either one ``*.safetensors`` file or
shards listed by a ``*.safetensors.index.json``; a single ``.safetensors`` file (as
ComfyUI distributes them) stands for itself, its names mapped by ``keymaps``. Every header is read and checked
against the names and shapes a model expects before any tensor data is touched;
tensors are then read one at a time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_, "F8_E4M3": np.uint8, "F8_E5M2": np.uint8,  # fp8 as its bytes (see fp8)
}
SAFETENSORS_RELEASES = ("hunyuan_video_t2v_720p_bf16.safetensors", "hunyuan_video_vae_bf16.safetensors",
                        "llava_llama3_fp16.safetensors", "clip_l.safetensors")
_LIST_LIMIT = 8


class CheckpointError(ValueError):
    """A checkpoint folder cannot be read: missing, pickled, truncated or not matching."""


def listed(items: list[str]) -> str:
    """At most ``_LIST_LIMIT`` items, then how many more."""
    more = f" (+{len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else ""
    return "; ".join(items[:_LIST_LIMIT]) + more


def check_shapes(where: Path, found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]],
                 what: str) -> None:
    """Raise a ``CheckpointError`` listing missing, unexpected and mis-shaped tensors."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = sorted(f"{n}: checkpoint {tuple(found[n])}, {what} {tuple(expected[n])}"
                       for n in set(expected) & set(found) if tuple(found[n]) != tuple(expected[n]))
    problems = [(label, items) for label, items in
                [("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)] if items]
    if problems:
        lines = [f"{where}: the checkpoint does not fit the {what}'s config (does config.json match the weights?)"]
        lines += [f"  {label} ({len(items)}): {listed(items)}" for label, items in problems]
        raise CheckpointError("\n".join(lines))


@dataclass(frozen=True)
class TensorRecord:
    """Where one tensor's bytes lie."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


CONFIG_FILES = ("config.json", "scheduler_config.json")


def read_config(folder: str | Path) -> dict:
    """``folder/config.json`` (or a scheduler's ``scheduler_config.json``) as a dict,
    or ``{}`` when there is none."""
    found = [Path(folder) / name for name in CONFIG_FILES if (Path(folder) / name).is_file()]
    if not found:
        return {}
    path = found[0]
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None


def refuse_pickled_file(file: Path) -> None:
    """A pickled single file (``.ckpt``, ``.pt``, ...) is refused, naming what to use instead."""
    raise CheckpointError(
        f"{file}: a pickled checkpoint ({file.suffix}); only safetensors are read, because unpickling "
        f"can run arbitrary code. Use the .safetensors release of the same weights (e.g. "
        f"{', '.join(SAFETENSORS_RELEASES)}), or convert it once with `torch.load` + "
        f"`safetensors.torch.save_file`")


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a component folder (shards checked to exist), or a single file."""
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix in PICKLE_SUFFIXES:
            refuse_pickled_file(folder)
        if folder.suffix != ".safetensors":
            raise CheckpointError(f"{folder}: not a .safetensors file; give a .safetensors file or a "
                                  f"diffusers component folder")
        return [folder]
    if not folder.is_dir():
        raise CheckpointError(f"weights folder {folder} does not exist")
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = json.loads(indexes[0].read_text()).get("weight_map", {})
        shards = sorted({folder / shard for shard in weight_map.values()})
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise CheckpointError(f"{folder}: shard(s) {missing} listed in {indexes[0].name} "
                                  f"are missing; download the complete checkpoint again")
        return shards
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise CheckpointError(
            f"{folder}: holds pickled weights {pickled}; only safetensors are read, because "
            f"unpickling can run arbitrary code. Convert them once with "
            f"`torch.load` + `safetensors.torch.save_file`, or use a safetensors checkpoint"
        )
    raise CheckpointError(f"{folder}: no *.safetensors weights found")


def read_header(file: Path) -> dict[str, TensorRecord]:
    """The tensor records of one safetensors file, checked against the file's size."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{file}: truncated (no safetensors header)")
        (length,) = struct.unpack("<Q", raw)
        if 8 + length > size:
            raise CheckpointError(f"{file}: truncated (header runs past the end of the file)")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{file}: not a safetensors file (unreadable header)") from None
    header.pop("__metadata__", None)
    records = {}
    for name, meta in header.items():
        if meta["dtype"] not in _DTYPES:
            raise CheckpointError(f"{file}: tensor {name!r} has unsupported dtype {meta['dtype']}")
        begin, end = meta["data_offsets"]
        if end - begin != int(np.prod(meta["shape"], dtype=np.int64)) * np.dtype(_DTYPES[meta["dtype"]]).itemsize:
            raise CheckpointError(f"{file}: tensor {name!r} has {end - begin} bytes for shape {meta['shape']} "
                                  f"of {meta['dtype']}; the file is damaged")
        records[name] = TensorRecord(file, meta["dtype"], tuple(meta["shape"]),
                                     8 + length + begin, 8 + length + end)
    last = max((r.end for r in records.values()), default=0)
    if last > size:
        raise CheckpointError(f"{file}: truncated ({size} bytes, tensors need {last}); "
                              f"download it again")
    return records


class Checkpoint:
    """The tensors of a component folder, indexed by name from the headers alone."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.records: dict[str, TensorRecord] = {}
        for file in weight_files(self.folder):
            self.records.update(read_header(file))

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: record.shape for name, record in self.records.items()}

    def check(self, expected: Mapping[str, tuple[int, ...]], what: str = "model") -> None:
        """Raise a ``CheckpointError`` listing missing, unexpected and mis-shaped tensors."""
        check_shapes(self.folder, self.shapes, expected, what)

    @property
    def nbytes(self) -> int:
        """The tensors' stored bytes."""
        return sum(record.end - record.start for record in self.records.values())

    def read_stored(self, name: str) -> np.ndarray:
        """One tensor at its stored precision (bf16 as its uint16 bits, numpy having no bf16).

        The bytes are read straight into the array (no memory map, whose pages would
        count towards the process's memory while mapped, and no second copy)."""
        record = self.records[name]
        array = np.empty(record.shape, dtype=_DTYPES[record.dtype])
        with open(record.file, "rb") as handle:
            handle.seek(record.start)
            got = handle.readinto(array.reshape(-1).view(np.uint8))
        if got != record.end - record.start:
            raise CheckpointError(f"{record.file}: tensor {name!r} has {record.end - record.start} bytes "
                                  f"in the header but {got} in the file")
        return array

    def in_storage_order(self) -> list[str]:
        """The tensor names, file by file in storage order (sequential reads)."""
        return sorted(self.records, key=lambda n: (self.records[n].file, self.records[n].start))
