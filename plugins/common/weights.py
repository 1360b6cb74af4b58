"""Loading a checkpoint (a folder, or a single file in a layout ``keymaps`` knows) into a MindSpore
``Cell`` whose parameter names are diffusers', and back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from mindspore import nn

from plugins.common import memory
from plugins.common.checkpoint import Checkpoint, CheckpointError, check_shapes
from plugins.common.keymaps import KeyMap, Piece, resolve, shapes_of
from plugins.common.precision import FLOATS, NAMES, Stored, narrow, store, to_float32
from plugins.common.scales import read_scales
from plugins.common.streaming import MappedCheckpoint

# A component streams when its checkpoint needs more than this share of the memory budget:
# the rest is for activations, the widened layer and the other components.
STREAM_ABOVE = 0.8
# Streaming on its own (``auto``), a component keeps its first tensors in memory up to this share of
# the budget: each step then reads only the rest from the page cache or the disk. The rest of the
# budget is the page cache's, which holds part of the streamed tensors between steps.
PINNED_SHARE = 0.6


def streams(option: str, checkpoint: Checkpoint) -> bool:
    """Whether to run from the mapped checkpoint: ``on``, ``off``, or ``auto`` (when it is larger
    than ``STREAM_ABOVE`` of the memory budget)."""
    if option == "auto":
        return checkpoint.nbytes > STREAM_ABOVE * memory.available()
    return option == "on"


def _check_fits(checkpoint: Checkpoint, what: str) -> None:
    """Streaming widens one tensor at a time: refuse a budget that cannot hold the largest."""
    name, record = max(checkpoint.records.items(), key=lambda item: item[1].end - item[1].start)
    needed = 2 * 4 * int(np.prod(record.shape))  # the float32 copy and the matmul that reads it
    budget = memory.available()
    if needed > budget:
        raise memory.MemoryBudgetError(f"{what}: a memory budget of {memory.gib(budget)} cannot hold even one layer "
                          f"while streaming ({name} needs {memory.gib(needed)} in float32); free memory "
                          f"or raise ${memory.BUDGET_VARIABLE}")


def _narrowed(stored: Stored, weight_dtype: str) -> Stored:
    """``stored`` converted to ``weight_dtype`` unless that is ``auto``; other than float weights
    (integer buffers) become float32."""
    dtype = stored.dtype
    if dtype not in FLOATS:
        return Stored(np.asarray(stored.array, np.float32), "F32")
    target = NAMES.get(weight_dtype, dtype)
    if target == dtype:
        return stored
    return Stored(narrow(to_float32(stored.array, dtype, scale=stored.scale), target), target)


def _assemble(pieces: tuple[Piece, ...], tensor: Callable[[str], np.ndarray]) -> np.ndarray:
    """A parameter's values from its pieces: a view of one stored tensor's rows, or (pieces of
    several runs of rows, e.g. swapped halves) their concatenation."""
    parts = []
    for piece in pieces:
        values = tensor(piece.key)
        whole = values.ndim == 0 or (piece.start, piece.stop) == (0, values.shape[0])
        parts.append(values if whole else values[piece.start:piece.stop])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Source:
    """What a checkpoint offers a model: its key map to the model's names, the scales of scaled
    fp8 weights, and the shapes and dtypes of the mapped parameters; headers only."""

    def __init__(self, path: str | Path, expected: dict[str, tuple[int, ...]], what: str) -> None:
        self.checkpoint = Checkpoint(path)
        self.scales, auxiliary = read_scales(self.checkpoint, self.checkpoint.folder)
        shapes = {key: record.shape for key, record in self.checkpoint.records.items() if key not in auxiliary}
        self.key_map: KeyMap = resolve(shapes, expected, what, self.checkpoint.folder)
        self.shapes = shapes_of(self.key_map, shapes)

    def dtype(self, name: str) -> str:
        return self.checkpoint.records[self.key_map.pieces[name][0].key].dtype

    def scale(self, name: str) -> float | None:
        return self.scales.get(self.key_map.pieces[name][0].key)

    def in_storage_order(self) -> list[str]:
        records = self.checkpoint.records

        def place(name: str) -> tuple:
            first = self.key_map.pieces[name][0]
            return records[first.key].file, records[first.key].start, first.start

        return sorted(self.key_map.pieces, key=place)


def load_weights(cell: nn.Cell, folder: str | Path, what: str = "model", weight_dtype: str = "auto",
                 stream: str = "off") -> bool:
    """Fill ``cell``'s parameters from ``folder`` (a checkpoint folder or a single safetensors
    file); True if they are streamed.

    Names and shapes are checked against the safetensors headers first (through the key map
    of the file's layout), so a checkpoint that does not fit fails before any tensor is read.
    Each tensor keeps its stored dtype (fp8 included, with its scale) unless ``weight_dtype``
    names another (see ``precision``): read into an array that becomes its parameter's
    storage, so it is copied once, from the file into memory (a fused tensor that several
    parameters share is read once, each a view of its rows); or, streamed (``stream``: on,
    off, auto), left in the mapped file. Parameters built under
    ``mindspore.nn.utils.no_init_parameters`` are never materialised with random values:
    loading costs only the checkpoint's bytes.
    """
    params = dict(cell.parameters_and_names())
    source = Source(folder, {name: tuple(p.shape) for name, p in params.items()}, what)
    checkpoint = source.checkpoint
    check_shapes(checkpoint.folder, source.shapes, {name: tuple(p.shape) for name, p in params.items()}, what)
    if streams(stream, checkpoint):
        _check_fits(checkpoint, what)
        mapped = MappedCheckpoint(checkpoint)
        pinned = PINNED_SHARE * memory.available() if stream == "auto" else 0
        for name in source.in_storage_order():
            dtype, pieces = source.dtype(name), source.key_map.pieces[name]
            if dtype not in FLOATS:
                raise CheckpointError(f"{what}: tensor {pieces[0].key!r} is {dtype}; only float weights "
                                      f"can be streamed (set stream_weights=off)")
            array = _assemble(pieces, mapped.array)
            if array.nbytes <= pinned:  # held in memory: read once, not at every step
                pinned -= array.nbytes
                store(params[name], Stored(np.array(array), dtype, scale=source.scale(name)))
                for piece in pieces:
                    mapped.drop(piece.key)
                continue
            release = mapped.releaser(pieces[0].key) if len(pieces) == 1 else None
            store(params[name], Stored(array, dtype, release, source.scale(name)))
        return True
    read: dict[str, np.ndarray] = {}

    def tensor(key: str) -> np.ndarray:
        if key not in read:
            read[key] = checkpoint.read_stored(key)
        return read[key]

    for name in source.in_storage_order():
        stored = Stored(_assemble(source.key_map.pieces[name], tensor), source.dtype(name),
                        scale=source.scale(name))
        store(params[name], _narrowed(stored, weight_dtype))
    return False


def seed_parameters(cell: nn.Cell, seed: int) -> None:
    """Redraw ``cell``'s randomly initialised parameters from ``seed``, each with the mean and
    spread its initialiser gave it; constant ones (norm weights, zero biases) stay as they are.

    MindSpore's initialisers are not seedable per model; this makes "random weights"
    reproducible, for a preset or a test, without changing their scale.
    """
    rng = np.random.default_rng(seed)
    for _, param in sorted(cell.parameters_and_names(), key=lambda item: item[0]):
        values = param.float().asnumpy()
        spread = float(values.std())
        if spread == 0.0:
            continue
        drawn = rng.standard_normal(param.shape).astype(np.float32) * np.float32(spread) + values.mean()
        store(param, Stored(drawn.astype(np.float32), "F32"))


def save_weights(cell: nn.Cell, folder: str | Path, filename: str = "model.safetensors") -> Path:
    """Write ``cell``'s parameters to ``folder/filename`` (float32 safetensors, checkpoint names)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(param.float().asnumpy()) for name, param in cell.parameters_and_names()}
    save_file(tensors, str(folder / filename))
    return folder / filename
