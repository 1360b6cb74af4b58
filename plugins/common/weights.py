"""Loading a checkpoint folder into a MindSpore ``Cell`` whose parameter names match it, and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mindspore import nn

from plugins.common import memory
from plugins.common.checkpoint import Checkpoint, CheckpointError
from plugins.common.precision import FLOATS, NAMES, Stored, narrow, store, to_float32
from plugins.common.streaming import MappedCheckpoint

# A component streams when its checkpoint needs more than this share of the memory budget:
# the rest is for activations, the widened layer and the other components.
STREAM_ABOVE = 0.8


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


def _resident(checkpoint: Checkpoint, name: str, weight_dtype: str) -> Stored:
    """Tensor ``name`` read into memory, converted to ``weight_dtype`` unless that is ``auto``."""
    array, dtype = checkpoint.read_stored(name), checkpoint.records[name].dtype
    if dtype not in FLOATS:
        array, dtype = np.asarray(array, np.float32), "F32"
    target = NAMES.get(weight_dtype, dtype)
    if target != dtype:
        array, dtype = narrow(to_float32(array, dtype), target), target
    return Stored(array, dtype)


def load_weights(cell: nn.Cell, folder: str | Path, what: str = "model", weight_dtype: str = "auto",
                 stream: str = "off") -> bool:
    """Fill ``cell``'s parameters from ``folder``, a lookup by name; True if they are streamed.

    Names and shapes are checked against the safetensors headers first, so a
    checkpoint that does not fit fails before any tensor is read. Each tensor keeps
    its stored dtype unless ``weight_dtype`` names another (see ``precision``): read
    into an array that becomes its parameter's storage, so it is copied once, from
    the file into memory; or, streamed (``stream``: on, off, auto), left in the mapped
    file. Parameters built under ``mindspore.nn.utils.no_init_parameters`` are never
    materialised with random values: loading costs only the checkpoint's bytes.
    """
    checkpoint = Checkpoint(folder)
    params = dict(cell.parameters_and_names())
    checkpoint.check({name: tuple(p.shape) for name, p in params.items()}, what)
    if streams(stream, checkpoint):
        _check_fits(checkpoint, what)
        mapped = MappedCheckpoint(checkpoint)
        for name in checkpoint.in_storage_order():
            dtype = checkpoint.records[name].dtype
            if dtype not in FLOATS:
                raise CheckpointError(f"{what}: tensor {name!r} is {dtype}; only F32, F16 and BF16 "
                                      f"weights can be streamed (set stream_weights=off)")
            store(params[name], Stored(mapped.array(name), dtype, mapped.releaser(name)))
        return True
    for name in checkpoint.in_storage_order():
        store(params[name], _resident(checkpoint, name, weight_dtype))
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
