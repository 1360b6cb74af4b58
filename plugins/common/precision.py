"""Weights kept at their stored precision and widened to the compute dtype where they are used.

A loaded parameter's storage is a numpy array holding the checkpoint's values in their
own dtype (bf16 as its uint16 bits, numpy having no bf16), either read into memory or
a view of a memory-mapped safetensors file (streaming, see ``streaming``). The
``Parameter`` shares that memory, so the names, shapes and dtypes of a model still
describe the checkpoint, and a 13B bf16 transformer costs 26 GB, not 52.

Layers take their weights through ``computable``: on the CPU backend there is no bf16
matmul, so a bf16 weight is widened to float32 just before its layer runs and dropped
after. The widening runs in numpy on all cores, because MindSpore's own bf16 cast runs
at about 11 ns an element on CPU, 18x slower than numpy's shift of the bits
(measured on 16M elements: 183 ms against 10 ms on 2 threads).

fp8 weights (``F8_E4M3``, ``F8_E5M2``) are held as their bytes and decoded through a
256-entry table (see ``fp8``), with ComfyUI's per-tensor scale where the file has one.
Weights quantized for int8 matmuls (``int8``) are held as their int8 rows (``QUANTIZED``),
each row with its own scale, in place of the storage they were made from. A
parameter may also carry LoRA adapters (see ``lora``): ``computable`` adds each one's
``strength * up @ down`` to the widened weight, so the stored weights never change.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor

from plugins.common.fp8 import FP8, scaled_table

# safetensors dtype -> (numpy storage dtype, MindSpore dtype)
FLOATS = {
    "F32": (np.float32, ms.float32),
    "F16": (np.float16, ms.float16),
    "BF16": (np.uint16, ms.bfloat16),
    "F8_E4M3": (np.uint8, ms.float8_e4m3fn),
    "F8_E5M2": (np.uint8, ms.float8_e5m2),
}
NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
QUANTIZED = "Q8"  # not a safetensors dtype: int8 rows quantized here, one scale per row (``int8``)
_STORAGE = {**FLOATS, QUANTIZED: (np.int8, ms.int8)}
_PARALLEL_ABOVE = 1 << 20  # elements; below this a thread pool costs more than it saves
_REUSE_ABOVE = 1 << 22  # elements; larger widened weights go to one reused buffer (see _Arena)


class Stored:
    """A parameter's values at their stored precision: ``array`` in ``dtype`` (a safetensors
    dtype name, or ``QUANTIZED``), times ``scale`` when the checkpoint has one (ComfyUI's scaled
    fp8), or times its row's scale (``QUANTIZED``: ``scale`` one float32 per row);
    ``release`` (streamed weights) drops the array's pages after a use."""

    def __init__(self, array: np.ndarray, dtype: str, release: Callable[[], None] | None = None,
                 scale: float | np.ndarray | None = None) -> None:
        self.array, self.dtype, self.release, self.scale = array, dtype, release, scale

    @property
    def streamed(self) -> bool:
        return self.release is not None


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="widen")


def _in_parallel(size: int, work: Callable[[slice], object]) -> None:
    """``work`` over slices of ``range(size)``, on all cores when large (numpy releases the GIL)."""
    workers = os.cpu_count() or 1
    if size < _PARALLEL_ABOVE or workers == 1:
        work(slice(0, size))
        return
    bounds = np.linspace(0, size, workers + 1).astype(int)
    for future in [_pool().submit(work, slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]:
        future.result()


class _Arena:
    """One float32 buffer that large widened weights reuse, one at a time.

    A fresh buffer of a few hundred MB costs the kernel a page fault and zeroing per page
    every time, a third of the widening's own time. The buffer is reused only while no
    view of it is alive (a view, and the tensor made from it, hold a reference to it):
    a second weight widened while the first is still in use gets a buffer of its own.
    Only on the CPU backend, where ops run synchronously and a dropped tensor is done.
    """

    def __init__(self) -> None:
        self.buffer: np.ndarray | None = None

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        on_cpu = ms.get_context("device_target") == "CPU"
        if size < _REUSE_ABOVE or not on_cpu or (self.buffer is not None and sys.getrefcount(self.buffer) > 2):
            return np.empty(shape, np.float32)
        if self.buffer is None or self.buffer.size < size:
            self.buffer = None
            self.buffer = np.empty(size, np.float32)
        return self.buffer[:size].reshape(shape)


_ARENA = _Arena()


def to_float32(array: np.ndarray, dtype: str, reuse: bool = False, scale: float | np.ndarray | None = None
               ) -> np.ndarray:
    """``array``'s values as float32 (``dtype`` its safetensors dtype, or ``QUANTIZED``), times
    ``scale`` if given (``QUANTIZED``: each row times its own), in a new array, or with ``reuse``
    in a buffer that the next call may overwrite once this result is dropped."""
    out = _ARENA.take(array.shape) if reuse else np.empty(array.shape, np.float32)
    if dtype == QUANTIZED:
        rows, target = array.reshape(array.shape[0], -1), out.reshape(array.shape[0], -1)
        _in_parallel(rows.shape[0], lambda s: np.multiply(rows[s], scale[s, None], out=target[s]))
        return out
    source, target = array.reshape(-1), out.reshape(-1)
    if dtype in FP8:  # one table lookup per element, the scale folded into the table
        lookup = scaled_table(dtype, scale)
        _in_parallel(source.size, lambda s: np.take(lookup, source[s], out=target[s]))
        return out
    if dtype == "BF16":  # a bf16 value is the upper half of the float32 with the same bits
        bits = target.view(np.uint32)
        _in_parallel(source.size, lambda s: np.left_shift(source[s], 16, out=bits[s], dtype=np.uint32))
    else:
        _in_parallel(source.size, lambda s: np.copyto(target[s], source[s]))
    if scale is not None:
        _in_parallel(source.size, lambda s: np.multiply(target[s], np.float32(scale), out=target[s]))
    return out


def narrow(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values to storage of ``dtype``; bf16 rounds to nearest even, as PyTorch does."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        return array
    if dtype == "F16":
        return array.astype(np.float16)
    bits = array.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    nan = np.isnan(array)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out.reshape(array.shape)


def store(param: Parameter, stored: Stored) -> None:
    """Make ``stored`` the storage of ``param`` (shared, not copied), in its stored dtype."""
    storage_dtype, ms_type = _STORAGE[stored.dtype]
    if stored.array.dtype != storage_dtype:
        raise TypeError(f"{param.name}: {stored.dtype} storage must be a {np.dtype(storage_dtype)} array, "
                        f"got {stored.array.dtype}")
    tensor = ms.from_numpy(stored.array)
    if stored.dtype != "F32" and stored.dtype != "F16":
        tensor = tensor.view(ms_type)
    if param.dtype != ms_type:
        if not param.has_init:  # set_dtype casts the values held (0.4 s for 38M): hand it one first
            param.set_data(ms.Tensor(np.zeros(1, np.float32)).astype(param.dtype), slice_shape=True)
        param.set_dtype(ms_type)
    param.set_data(tensor)
    param.stored = stored


def stored_of(param: Parameter) -> Stored | None:
    return getattr(param, "stored", None)


def bf16_operand(param: Parameter) -> tuple[np.ndarray, Callable[[], None] | None]:
    """``param``'s values as bf16 bits for a bf16 matmul, and what to call once it is done:
    its own storage where it is held in bf16 (no copy; streamed weights drop their pages
    after), fp16 storage rounded to bf16 in one pass, else its float32 values rounded now."""
    from plugins.common import onednn

    stored = stored_of(param)
    if stored is not None and stored.scale is None and not getattr(param, "adapters", None):
        if stored.dtype == "BF16":
            return stored.array, stored.release
        if stored.dtype == "F16":
            bits = onednn.to_bf16(stored.array)
            if stored.release is not None:
                stored.release()
            return bits, None
    return onednn.to_bf16(computable(param).asnumpy()), None


def computable(param: Parameter, dtype: ms.dtype = ms.float32) -> Tensor:
    """``param``'s values in the compute ``dtype``: the parameter itself where it is held in
    that dtype, else a widened copy made now (streamed weights: their pages dropped after),
    with the parameter's LoRA adapters added to it if it has any."""
    stored = stored_of(param)
    adapters = getattr(param, "adapters", None)
    if stored is None and not adapters:
        return param if param.dtype == dtype else param.astype(dtype)
    if stored is None:
        stored = Stored(param.float().asnumpy(), "F32")
    if param.dtype == dtype and not stored.streamed and stored.scale is None and not adapters:
        return param
    values = to_float32(stored.array, stored.dtype, reuse=True, scale=stored.scale)
    if stored.streamed:
        stored.release()
    for adapter in adapters or ():
        adapter.add_to(values)
    tensor = ms.from_numpy(values)
    return tensor if dtype == ms.float32 else tensor.astype(dtype)
