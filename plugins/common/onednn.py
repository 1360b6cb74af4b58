"""bf16 (and float32) matmuls and attention on the CPU, through the oneDNN library MindSpore ships.

MindSpore's CPU backend has no bf16 matmul kernel, but the oneDNN it bundles
(``mindspore/lib/libdnnl.so.3``) has bf16 matmul, reorder and softmax primitives that
run on AVX512_BF16 and AMX where the CPU has them. Its C API is called here through
``ctypes``. Its float32 primitives serve CPUs without bf16 instructions: computed whole on
oneDNN, the transformer's blocks skip MindSpore's per-op overhead there too.

That oneDNN is built for a caller-provided thread pool. Ours is compiled by the install step
(``native/threadpool.cpp``): given to the streams, it runs every primitive on all cores with
oneDNN's own partitioning, its workers spinning briefly between primitives. Where it was not
built (or ``$HUNYUAN_ZOO_NATIVE=0``), oneDNN runs each primitive on the calling thread, and
the work is split over rows or columns and run on a pool of Python threads (ctypes releases the
GIL during a call). Where the CPU has AMX and the module was built, bf16 linear layers and
attention run as fused kernels of ours (``native/linear.cpp``, ``native/attention.cpp``), else
as oneDNN matmuls.

Operands are numpy arrays: on the bf16 path, float32 activations are rounded to bf16 (round
to nearest even), weights come as bf16 bits (``uint16``), and every product is accumulated
and returned in float32; on the float32 path everything is float32.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import numpy as np

from plugins.common import native
from plugins.common.precision import narrow, to_float32

F16, BF16, F32 = 1, 2, 3  # dnnl_data_type_t
_CPU, _IN_ORDER, _FORWARD_INFERENCE, _SOFTMAX_ACCURATE = 1, 1, 96, 0x30000
_BINARY = {"add": 0x1FFF0, "mul": 0x1FFF1}  # dnnl_binary_add, dnnl_binary_mul
SRC, DST, WEIGHTS, BIAS, SCALE, SHIFT, SCRATCHPAD = 1, 17, 33, 41, 51, 52, 80  # DNNL_ARG_*
_USE_SCALE, _USE_SHIFT, _RMS_NORM = 0x2, 0x4, 0x20  # dnnl_normalization_flags_t
_USER_SCRATCHPAD, _QUERY_WEIGHTS_MD, _QUERY_SCRATCHPAD_MD = 1, 131, 136
_FORMAT_ANY = 1  # dnnl_format_tag_any: the primitive chooses the layout


def post_op_arg(index: int) -> int:
    """The argument of post-op ``index``'s second operand: DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) |
    DNNL_ARG_SRC_1, as this oneDNN 3.x build numbers them."""
    return (1 << 15) * (index + 1) | 2


_MAX_DIMS = 12
_ROWS_PER_TASK = 256  # the row split of a reorder across threads


class OneDnnError(RuntimeError):
    """oneDNN refused or failed a call (status code and the call named)."""


def _library_path() -> Path:
    import mindspore

    return Path(mindspore.__file__).parent / "lib" / "libdnnl.so.3"


@cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))
    vp, i64, i32, ptr = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.POINTER
    signatures = {
        "dnnl_engine_create": [ptr(vp), i32, ctypes.c_size_t],
        "dnnl_stream_create": [ptr(vp), vp, ctypes.c_uint],
        "dnnl_memory_desc_create_with_strides": [ptr(vp), i32, ptr(i64), i32, ptr(i64)],
        "dnnl_memory_desc_create_with_tag": [ptr(vp), i32, ptr(i64), i32, i32],
        "dnnl_memory_create": [ptr(vp), vp, vp, vp],
        "dnnl_memory_set_data_handle": [vp, vp],
        "dnnl_matmul_primitive_desc_create": [ptr(vp), vp, vp, vp, vp, vp, vp],
        "dnnl_reorder_primitive_desc_create": [ptr(vp), vp, vp, vp, vp, vp],
        "dnnl_softmax_forward_primitive_desc_create": [ptr(vp), vp, i32, i32, vp, vp, i32, vp],
        "dnnl_layer_normalization_forward_primitive_desc_create": [ptr(vp), vp, i32, vp, vp, vp, ctypes.c_float,
                                                                   ctypes.c_uint, vp],
        "dnnl_primitive_attr_create": [ptr(vp)],
        "dnnl_primitive_attr_set_post_ops": [vp, vp],
        "dnnl_primitive_attr_set_scratchpad_mode": [vp, i32],
        "dnnl_post_ops_create": [ptr(vp)],
        "dnnl_post_ops_append_binary": [vp, i32, vp],
        "dnnl_post_ops_append_eltwise": [vp, i32, ctypes.c_float, ctypes.c_float],
        "dnnl_primitive_create": [ptr(vp), vp],
        "dnnl_primitive_execute": [vp, vp, i32, vp],
        "dnnl_stream_wait": [vp],
        "dnnl_threadpool_interop_stream_create": [ptr(vp), vp, vp],
        "dnnl_threadpool_interop_set_max_concurrency": [i32],
    }
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, ctypes.c_int
    lib.dnnl_primitive_desc_query_md.argtypes, lib.dnnl_primitive_desc_query_md.restype = [vp, i32, i32], vp
    lib.dnnl_memory_desc_get_size.argtypes, lib.dnnl_memory_desc_get_size.restype = [vp], ctypes.c_size_t
    return lib


def _call(name: str, *args: object) -> None:
    status = getattr(_lib(), name)(*args)
    if status != 0:
        raise OneDnnError(f"{name} returned oneDNN status {status}")


def _handle() -> ctypes.c_void_p:
    return ctypes.c_void_p()


_engine_lock = threading.Lock()


@cache
def _engine() -> ctypes.c_void_p:
    """The one CPU engine: created under a lock, since the pool's threads may ask for it at once,
    and a primitive run on a stream of another engine is refused (invalid arguments)."""
    with _engine_lock:
        return _created_engine()


@cache
def _created_engine() -> ctypes.c_void_p:
    engine = _handle()
    _call("dnnl_engine_create", ctypes.byref(engine), _CPU, 0)
    return engine


_streams = threading.local()


def _stream() -> ctypes.c_void_p:
    """One stream per thread: a stream is not to be shared between threads. With the compiled
    pool, a stream runs its primitives on it."""
    if not hasattr(_streams, "stream"):
        stream = _handle()
        if _native_pool() is None:
            _call("dnnl_stream_create", ctypes.byref(stream), _engine(), _IN_ORDER)
        else:
            _call("dnnl_threadpool_interop_stream_create", ctypes.byref(stream), _engine(), _native_pool())
        _streams.stream = stream
    return _streams.stream


_SPIN_US = 300  # how long the compiled pool's workers wait, spinning, for the next primitive


@cache
def _native_pool() -> ctypes.c_void_p | None:
    """The compiled thread pool, or None where it was not built or is turned off."""
    compiled = native.library()
    if compiled is None:
        return None
    _call("dnnl_threadpool_interop_set_max_concurrency", _threads())
    return ctypes.c_void_p(compiled.zoo_threadpool_create(_threads(), _SPIN_US))


def _shares() -> int:
    """Into how many parts our code splits a oneDNN call's work: one with the compiled pool
    (oneDNN splits it), else one per core."""
    return 1 if _native_pool() is not None else _threads()


@cache
def _desc(shape: tuple[int, ...], strides: tuple[int, ...] | None, dtype: int) -> ctypes.c_void_p:
    """A memory descriptor; strides None: any layout, the primitive's choice (``_Primitive.pack``)."""
    dims = (ctypes.c_int64 * _MAX_DIMS)(*shape)
    desc = _handle()
    if strides is None:
        _call("dnnl_memory_desc_create_with_tag", ctypes.byref(desc), len(shape), dims, dtype, _FORMAT_ANY)
        return desc
    steps = (ctypes.c_int64 * _MAX_DIMS)(*strides)
    _call("dnnl_memory_desc_create_with_strides", ctypes.byref(desc), len(shape), dims, dtype, steps)
    return desc


Layout = tuple[tuple[int, ...], tuple[int, ...] | None, int]  # shape, strides (in elements), data type
# Post-ops in order: ("eltwise", a name in ACTIVATIONS), or ("add" | "mul", the second operand's layout).
PostOps = tuple[tuple[str, object], ...]
_primitives = threading.local()


def _per_thread(make: Callable[..., _Primitive]) -> Callable[..., _Primitive]:
    """Cache primitives per thread and arguments: one primitive executed by two threads at once
    shares its scratchpad between them, which oneDNN refuses (invalid arguments)."""
    def get(*args: object) -> _Primitive:
        cached = _primitives.__dict__.setdefault(make.__name__, {})
        if args not in cached:
            cached[args] = make(*args)
        return cached[args]

    get.__doc__, get.__name__ = make.__doc__, make.__name__
    return get


class _Primitive:
    """A created primitive and the layouts of its arguments.

    Its scratchpad is ours (user mode): with the library's, two threads executing at once
    fail with "invalid arguments". One buffer per thread serves every primitive the thread
    runs, so what is held is the largest scratchpad, not the sum over all shapes."""

    def __init__(self, create: Callable[[ctypes.c_void_p, ctypes.c_void_p], None], layouts: dict[int, Layout],
                 post_ops: PostOps = ()) -> None:
        attr = _handle()
        _call("dnnl_primitive_attr_create", ctypes.byref(attr))
        _call("dnnl_primitive_attr_set_scratchpad_mode", attr, _USER_SCRATCHPAD)
        if post_ops:
            chain = _handle()
            _call("dnnl_post_ops_create", ctypes.byref(chain))
            layouts = dict(layouts)
            for index, (kind, operand) in enumerate(post_ops):
                if kind == "eltwise":
                    _call("dnnl_post_ops_append_eltwise", chain, ACTIVATIONS[operand], 1.0, 0.0)
                else:
                    _call("dnnl_post_ops_append_binary", chain, _BINARY[kind], _desc(*operand))
                    layouts[post_op_arg(index)] = operand
            _call("dnnl_primitive_attr_set_post_ops", attr, chain)
        descriptor = _handle()
        create(descriptor, attr)
        self.primitive = _handle()
        _call("dnnl_primitive_create", ctypes.byref(self.primitive), descriptor)
        self.layouts = layouts
        self.memories: dict[int, ctypes.c_void_p] = {}
        self.chosen: dict[int, ctypes.c_void_p] = {}  # the layouts it chose where it was free to
        if layouts.get(WEIGHTS, (None, ()))[1] is None:
            chosen = _lib().dnnl_primitive_desc_query_md(descriptor, _QUERY_WEIGHTS_MD, 0)
            self.chosen[WEIGHTS] = ctypes.c_void_p(chosen)
        self.packers: dict[Layout, _Primitive] = {}
        scratchpad = _lib().dnnl_primitive_desc_query_md(descriptor, _QUERY_SCRATCHPAD_MD, 0)
        self.scratchpad = _lib().dnnl_memory_desc_get_size(scratchpad) if scratchpad else 0
        if self.scratchpad:
            memory = _handle()
            _call("dnnl_memory_create", ctypes.byref(memory), scratchpad, _engine(), None)
            self.memories[SCRATCHPAD] = memory

    def pack(self, source: Layout, pointer: int) -> np.ndarray:
        """The weights at ``pointer`` (in ``source``'s layout) reordered into the layout this primitive
        chose for them, in a new buffer: packed once, they serve every run on the same weights."""
        chosen = self.chosen[WEIGHTS]
        if source not in self.packers:
            def create(descriptor: ctypes.c_void_p, attr: ctypes.c_void_p) -> None:
                _call("dnnl_reorder_primitive_desc_create", ctypes.byref(descriptor), _desc(*source), _engine(),
                      chosen, _engine(), attr)

            self.packers[source] = _Primitive(create, {SRC: source})
            self.packers[source].memories[DST] = self._new_memory(chosen)
        packed = np.empty(_lib().dnnl_memory_desc_get_size(chosen), np.uint8)
        self.packers[source].run({SRC: pointer, DST: packed.ctypes.data})
        return packed

    @staticmethod
    def _new_memory(desc: ctypes.c_void_p) -> ctypes.c_void_p:
        memory = _handle()
        _call("dnnl_memory_create", ctypes.byref(memory), desc, _engine(), None)
        return memory

    def _memory(self, arg: int) -> ctypes.c_void_p:
        if arg not in self.memories:
            self.memories[arg] = self._new_memory(self.chosen[arg] if arg in self.chosen else _desc(*self.layouts[arg]))
        return self.memories[arg]

    def run(self, pointers: dict[int, int]) -> None:
        """Execute on raw data pointers, one per argument, on the calling thread."""
        if self.scratchpad:
            pointers = {**pointers, SCRATCHPAD: _scratchpad(self.scratchpad).ctypes.data}
        pairs = (_ExecArg * len(pointers))()
        for index, (arg, pointer) in enumerate(pointers.items()):
            memory = self._memory(arg)
            _call("dnnl_memory_set_data_handle", memory, ctypes.c_void_p(pointer))
            pairs[index].arg, pairs[index].memory = arg, memory
        stream = _stream()
        _call("dnnl_primitive_execute", self.primitive, stream, len(pointers), pairs)
        _call("dnnl_stream_wait", stream)


def _scratchpad(size: int) -> np.ndarray:
    """This thread's scratchpad, grown to ``size`` bytes."""
    buffer = getattr(_streams, "scratchpad", None)
    if buffer is None or buffer.size < size:
        buffer = _streams.scratchpad = np.empty(size, np.uint8)
    return buffer


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


@_per_thread
def matmul(src: Layout, weights: Layout, dst: Layout, bias: Layout | None = None, post_ops: PostOps = ()) -> _Primitive:
    """``dst = post_ops(src @ weights (+ bias))``; 2D or batched 3D layouts, any strides."""
    layouts = {SRC: src, WEIGHTS: weights, DST: dst}
    if bias is not None:
        layouts[BIAS] = bias

    def create(descriptor: ctypes.c_void_p, attr: ctypes.c_void_p) -> None:
        _call("dnnl_matmul_primitive_desc_create", ctypes.byref(descriptor), _engine(), _desc(*src),
              _desc(*weights), None if bias is None else _desc(*bias), _desc(*dst), attr)

    return _Primitive(create, layouts, post_ops)


@_per_thread
def reorder(src: Layout, dst: Layout) -> _Primitive:
    """Copy ``src`` into ``dst``'s layout and data type (f32 -> bf16 rounds to nearest even)."""
    def create(descriptor: ctypes.c_void_p, attr: ctypes.c_void_p) -> None:
        _call("dnnl_reorder_primitive_desc_create", ctypes.byref(descriptor), _desc(*src), _engine(),
              _desc(*dst), _engine(), attr)

    return _Primitive(create, {SRC: src, DST: dst})


@_per_thread
def softmax(src: Layout, dst: Layout, axis: int) -> _Primitive:
    def create(descriptor: ctypes.c_void_p, attr: ctypes.c_void_p) -> None:
        _call("dnnl_softmax_forward_primitive_desc_create", ctypes.byref(descriptor), _engine(),
              _FORWARD_INFERENCE, _SOFTMAX_ACCURATE, _desc(*src), _desc(*dst), axis, attr)

    return _Primitive(create, {SRC: src, DST: dst})


@_per_thread
def layer_norm(src: Layout, dst: Layout, eps: float, flags: int) -> _Primitive:
    """Normalise each row of a 2D ``src`` into ``dst`` (``flags``: scale, shift, RMS instead of centred)."""
    width = src[0][1]
    layouts = {SRC: src, DST: dst}
    if flags & _USE_SCALE:
        layouts[SCALE] = ((width,), (1,), F32)
    if flags & _USE_SHIFT:
        layouts[SHIFT] = ((width,), (1,), F32)

    def create(descriptor: ctypes.c_void_p, attr: ctypes.c_void_p) -> None:
        _call("dnnl_layer_normalization_forward_primitive_desc_create", ctypes.byref(descriptor), _engine(),
              _FORWARD_INFERENCE, _desc(*src), _desc(*dst), None, eps, flags, attr)

    return _Primitive(create, layouts)


def normalize(x: np.ndarray, eps: float, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
              centre: bool = True, out: np.ndarray | None = None) -> np.ndarray:
    """Layer norm (``centre``) or RMS norm of each row of ``x [rows, D]`` in float32, times
    ``weight`` plus ``bias`` where given, in one pass per row block on all cores; written to
    ``out`` (contiguous float32 or bf16 bits, may be ``x`` itself) or a new float32 array. (oneDNN's
    layer norm writes strided rows wrongly: measured, so refused.)"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, np.float32) if out is None else out
    if not out.flags.c_contiguous:
        raise ValueError(f"normalize: expected a contiguous output, got strides {out.strides}")
    flags = (0 if centre else _RMS_NORM) | (0 if weight is None else _USE_SCALE) | (0 if bias is None else _USE_SHIFT)

    def work(block: slice) -> None:
        pointers = {SRC: x[block].ctypes.data, DST: out[block].ctypes.data}
        if weight is not None:
            pointers[SCALE] = weight.ctypes.data
        if bias is not None:
            pointers[SHIFT] = bias.ctypes.data
        layer_norm(layout(x[block]), layout(out[block]), eps, flags).run(pointers)

    _in_parallel(work, _row_chunks(x.shape[0], _shares()))
    return out


def _rows(shape: tuple[int, int], dtype: int) -> Layout:
    return shape, (shape[1], 1), dtype


_TYPES = {np.dtype(np.float32): F32, np.dtype(np.uint16): BF16, np.dtype(np.float16): F16}


def layout(array: np.ndarray) -> Layout:
    """The layout of a 2D array whose rows may be strided (a view of a wider array's columns);
    bf16 travels as ``uint16`` bits."""
    size = array.itemsize
    if array.ndim != 2 or array.strides[1] != size or array.strides[0] % size:
        raise ValueError(f"oneDNN operand: expected 2D rows of contiguous elements, got shape {array.shape} "
                         f"strides {array.strides}")
    return array.shape, (array.strides[0] // size, 1), _TYPES[array.dtype]


@cache
def _pool() -> ThreadPoolExecutor:
    """The helper threads: one fewer than the cores, since the calling thread works too."""
    return ThreadPoolExecutor(max(1, _threads() - 1), thread_name_prefix="onednn")


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _in_parallel(work: Callable[[object], None], tasks: Sequence[object], parts: int | None = None) -> None:
    """``work`` on every task, the tasks dealt round-robin into ``parts`` shares (default: one per
    core): the calling thread runs the first share while the pool runs the others (a hand-off to
    a sleeping pool thread costs about 80 us here, which a layer on few tokens feels)."""
    parts = _threads() if parts is None else parts
    shares = [tasks[i::parts] for i in range(min(parts, len(tasks)))]
    futures = [_pool().submit(_each, work, share) for share in shares[1:]]
    _each(work, shares[0])
    for future in futures:
        future.result()


def _each(work: Callable[[object], None], tasks: Sequence[object]) -> None:
    for task in tasks:
        work(task)


def for_row_blocks(rows: int, work: Callable[[slice], None]) -> None:
    """``work`` on ``rows`` split into blocks, one per thread, run on the pool (numpy's loops
    release the GIL, so numpy work splits too)."""
    _in_parallel(work, _row_chunks(rows))


def _row_chunks(rows: int, parts: int | None = None) -> list[slice]:
    """``rows`` split into ``parts`` chunks (default: one per thread), none smaller than
    ``_ROWS_PER_TASK`` rows."""
    count = max(1, min(_threads() if parts is None else parts, rows // _ROWS_PER_TASK))
    bounds = np.linspace(0, rows, count + 1).astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def to_bf16(array: np.ndarray) -> np.ndarray:
    """float32 or float16 values as bf16 bits (``uint16``), rounded to nearest even, on all cores."""
    source = F16 if array.dtype == np.float16 else F32
    array = np.ascontiguousarray(array, dtype=np.float16 if source == F16 else np.float32)
    flat = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array.reshape(1, -1)
    out = np.empty(flat.shape, np.uint16)

    def work(rows: slice) -> None:
        shape = (rows.stop - rows.start, flat.shape[1])
        reorder(_rows(shape, source), _rows(shape, BF16)).run(
            {SRC: flat[rows].ctypes.data, DST: out[rows].ctypes.data})

    _in_parallel(work, _row_chunks(flat.shape[0], _shares()))
    return out.reshape(array.shape)


ACTIVATIONS = {"gelu_tanh": 0x2B, "silu": 0x2C, "exp": 0x2A}  # dnnl_eltwise_gelu_tanh, _swish (alpha 1), _exp
_COLUMNS_PER_TASK = 256  # the column split of a linear layer across threads


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, activation: str | None = None,
           gate: np.ndarray | None = None, residual: np.ndarray | None = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """``residual + gate * activation(x [M, K] @ weight.T + bias)``, each part where given, in one
    pass: ``weight [N, K]`` bf16 bits, with ``x`` float32 (rounded to bf16 here) or bf16 bits; or
    ``weight`` float32, with ``x`` float32 (a float32 product); ``bias``/``gate [N]`` float32,
    ``residual [M, N]`` float32, ``activation`` one of ``ACTIVATIONS`` or None. Written to ``out``
    (float32 or bf16 bits; rows may be strided) or to a new float32 array.

    The threads split the output columns, so each reads (and packs for AMX) only its share
    of the weight, which is the larger operand."""
    out = np.empty((x.shape[0], weight.shape[0]), np.float32) if out is None else out
    if _fused_linear(x, weight, bias, activation, gate, residual, out):
        return out
    if weight.dtype == np.uint16 and x.dtype != np.uint16:
        x = to_bf16(x)  # bf16 bits are read as they lie (see ``layout``)
    outputs = weight.shape[0]
    count = max(1, min(_shares(), outputs // _COLUMNS_PER_TASK))
    bounds = np.linspace(0, outputs, count + 1).astype(int)

    def work(columns: slice) -> None:
        part = weight[columns]
        pointers = {SRC: x.ctypes.data, WEIGHTS: part.ctypes.data, DST: out[:, columns].ctypes.data}
        bias_layout = None
        if bias is not None:
            bias_layout, pointers[BIAS] = layout(bias[None, columns]), bias[columns].ctypes.data
        post_ops: list[tuple[str, object]] = [] if activation is None else [("eltwise", activation)]
        for kind, operand in (("mul", None if gate is None else gate[None, columns]),
                              ("add", None if residual is None else residual[:, columns])):
            if operand is not None:
                pointers[post_op_arg(len(post_ops))] = operand.ctypes.data
                post_ops.append((kind, layout(operand)))
        width = x.shape[1]
        matmul(layout(x), ((width, part.shape[0]), (1, width), _TYPES[weight.dtype]), layout(out[:, columns]),
               bias_layout, tuple(post_ops)).run(pointers)

    _in_parallel(work, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
    return out


_FUSED_ACTIVATIONS = {None: 0, "gelu_tanh": 1, "silu": 2}  # as linear.cpp numbers them


def _fused_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, activation: str | None,
                  gate: np.ndarray | None, residual: np.ndarray | None, out: np.ndarray,
                  scales: np.ndarray | None = None) -> bool:
    """``linear`` by the compiled AMX kernel (``native/linear.cpp``), which reads the weight as it is
    stored and applies the post-ops as it writes; False where it cannot run: not built, no AMX, K
    or N not a multiple of 32, or operands it does not take (float32 weights, strided columns).
    With ``scales``, ``weight`` is int8 rows and these their scales, and the product is int8 (see
    ``int8``; K a multiple of 64)."""
    compiled = native.library()
    int8 = scales is not None
    if compiled is None or not ("amx_int8" in _cpu_flags() if int8 else _has_amx()):
        return False
    if activation not in _FUSED_ACTIVATIONS:
        return False
    if weight.dtype != (np.int8 if int8 else np.uint16):
        return False
    kinds = (np.float32, np.uint16)
    if x.dtype not in kinds or out.dtype not in kinds or (residual is not None and residual.dtype != np.float32):
        return False
    if any(a is not None and a.strides[1] != a.itemsize for a in (x, out, residual)):
        return False
    weight = np.ascontiguousarray(weight)
    bias, gate = (None if v is None else np.ascontiguousarray(v, np.float32).reshape(-1) for v in (bias, gate))

    def at(array: np.ndarray | None) -> int | None:
        return None if array is None else array.ctypes.data

    inputs = (_native_pool(), x.ctypes.data, int(x.dtype == np.float32), x.strides[0] // x.itemsize, *x.shape,
              weight.ctypes.data)
    outputs = (weight.shape[0], at(bias), _FUSED_ACTIVATIONS[activation], at(gate), at(residual),
               0 if residual is None else residual.strides[0] // 4, out.ctypes.data, int(out.dtype == np.uint16),
               out.strides[0] // out.itemsize)
    if int8:
        return compiled.zoo_linear_int8(*inputs, np.ascontiguousarray(scales, np.float32).ctypes.data, *outputs) == 0
    return compiled.zoo_linear(*inputs, *outputs) == 0


QUERY_BLOCK = 512  # query rows per matmul: with keys and values packed once per head, blocks of 512 took
# 0.21-0.24 s for 24 heads x 2368 tokens against 0.23-0.27 s with 256 and 0.22-0.30 s with 128 (a noisy machine)
_LOWEST = float(np.finfo(np.float32).min)
_scratch = threading.local()


def _buffers(rows: int, keys: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's score (float32) and probability (bf16) buffers, grown as needed."""
    size = rows * keys
    if getattr(_scratch, "size", 0) < size:
        _scratch.scores, _scratch.probs, _scratch.size = np.empty(size, np.float32), np.empty(size, np.uint16), size
    return _scratch.scores, _scratch.probs


EXP_SAFE = 60.0  # |score| up to which exp needs no shift: exp(60) = 1.1e26, so sums over 1e10 keys times
# values up to 100 stay below float32's (and bf16's) largest, 3.4e38, and exp(-60) is far from underflow


def attention(query: np.ndarray, key: np.ndarray, value: np.ndarray, mask: np.ndarray | None = None,
              out: np.ndarray | None = None, score_bounds: np.ndarray | None = None,
              exact: bool = False) -> np.ndarray:
    """``softmax(query @ key^T) @ value`` for each batch item and head, in bf16 with float32
    scores and sums: ``query [B, Sq, H, D]`` (already scaled), ``key``/``value [B, Sk, H, D]``,
    float32 or bf16 bits; ``mask [B, Sk]`` True where a key may be attended to. Written to
    ``out [B, Sq, H*D]`` (float32 or bf16 bits; rows may be strided) or to a new float32
    ``[B, Sq, H, D]``. With ``exact``, float32 operands stay float32: every product and the
    probabilities are float32 (the matmul kernels, no score bounds).

    Heads are read in place (strided), so nothing is transposed. Each task is one head (or,
    with fewer heads than threads, a share of its queries): it packs the head's keys and values
    once into the layouts the matmuls choose, then takes its queries in blocks, whose scores go
    through a softmax that writes bf16 directly.

    ``score_bounds [B, H]``, where the caller knows them, bound ``|query . key|`` per head. A head
    whose bound is at most ``EXP_SAFE`` (and whose item has a key to attend to) needs no
    softmax pass: exp is a post-op of the score matmul, written in bf16, and the output rows
    are divided by their sums (a product with ones) after the second matmul. Softmax is
    unchanged by the shift by each row's maximum that this skips; what changes is only which
    value is rounded to bf16 (the exponential rather than the probability), by the same
    relative amount.
    """
    if not exact:
        query, key, value = (a if a.dtype == np.uint16 else to_bf16(a) for a in (query, key, value))
    query, key, value = (np.ascontiguousarray(a) for a in (query, key, value))
    batch, queries, heads, dim = query.shape
    keys, row, low, size = key.shape[1], heads * dim, _TYPES[query.dtype], query.itemsize
    out = np.empty(query.shape, np.float32) if out is None else out
    if not exact and _fused_attention(query, key, value, mask, out, score_bounds):
        return out
    out_row, out_type, out_size = out.strides[1] // out.itemsize, _TYPES[out.dtype], out.itemsize
    additive = None if mask is None else np.where(mask, 0.0, _LOWEST).astype(np.float32)
    fast = np.zeros((batch, heads), bool) if score_bounds is None or exact else score_bounds <= EXP_SAFE
    if mask is not None:
        fast &= mask.any(axis=1)[:, None]
    ones = np.full((keys, 1), 0x3F80, np.uint16)  # bf16 1.0

    post_ops = () if additive is None else (("add", _rows((1, keys), F32)),)
    key_layout, value_layout = ((dim, keys), (1, row), low), ((keys, dim), (row, 1), low)

    def work(task: tuple[int, int, range]) -> None:
        b, h, starts = task
        exp = bool(fast[b, h])
        head_keys = key.ctypes.data + size * ((b * keys * heads + h) * dim)
        head_values = value.ctypes.data + size * ((b * keys * heads + h) * dim)
        pack = len(starts) > 1  # a single block reads keys and values in place
        matmuls: dict[int, tuple[_Primitive, _Primitive, tuple[np.ndarray, ...]]] = {}  # by block rows
        for start in starts:
            rows = min(QUERY_BLOCK, queries - start)
            if rows not in matmuls:
                scoring = matmul(((rows, dim), (row, 1), low), ((dim, keys), None if pack else key_layout[1], low),
                                 _rows((rows, keys), BF16 if exp else F32), None,
                                 post_ops + ((("eltwise", "exp"),) if exp else ()))
                weighing = matmul(_rows((rows, keys), low), ((keys, dim), None if pack else value_layout[1], low),
                                  _rows((rows, dim), F32) if exp else ((rows, dim), (out_row, 1), out_type))
                packed = (scoring.pack(key_layout, head_keys), weighing.pack(value_layout, head_values)) if pack else ()
                matmuls[rows] = (scoring, weighing, packed)
            scoring, weighing, packed = matmuls[rows]
            keys_at, values_at = (array.ctypes.data for array in packed) if pack else (head_keys, head_values)
            scores, probs = _buffers(rows, keys)
            probs = scores if exact else probs  # (the softmax runs in place)
            target = out.ctypes.data + b * out.strides[0] + start * out.strides[1] + out_size * h * dim
            pointers = {SRC: query.ctypes.data + size * (((b * queries + start) * heads + h) * dim),
                        WEIGHTS: keys_at, DST: (probs if exp else scores).ctypes.data}
            if additive is not None:
                pointers[post_op_arg(0)] = additive.ctypes.data + 4 * b * keys
            scoring.run(pointers)
            if not exp:
                softmax(_rows((rows, keys), F32), _rows((rows, keys), low), 1).run(
                    {SRC: scores.ctypes.data, DST: probs.ctypes.data})
                weighing.run({SRC: probs.ctypes.data, WEIGHTS: values_at, DST: target})
                continue
            sums, unscaled = np.empty((rows, 1), np.float32), np.empty((rows, dim), np.float32)
            matmul(_rows((rows, keys), BF16), _rows((keys, 1), BF16), _rows((rows, 1), F32)).run(
                {SRC: probs.ctypes.data, WEIGHTS: ones.ctypes.data, DST: sums.ctypes.data})
            weighing.run({SRC: probs.ctypes.data, WEIGHTS: values_at, DST: unscaled.ctypes.data})
            unscaled /= sums
            reorder(_rows((rows, dim), F32), ((rows, dim), (out_row, 1), out_type)).run(
                {SRC: unscaled.ctypes.data, DST: target})

    blocks = range(0, queries, QUERY_BLOCK)
    shares = max(1, min(len(blocks), _shares() // (batch * heads)))  # split queries only when heads are few
    tasks = [(b, h, blocks[i::shares]) for b in range(batch) for h in range(heads) for i in range(shares)]
    _in_parallel(work, tasks, _shares())
    return out


def _fused_attention(query: np.ndarray, key: np.ndarray, value: np.ndarray, mask: np.ndarray | None,
                     out: np.ndarray, score_bounds: np.ndarray | None) -> bool:
    """``attention`` by the compiled AMX kernel, which never writes a score matrix (an online
    softmax over steps of 256 keys, the bounded heads in one pass); False where it cannot run:
    not built, no AMX, a head dimension it does not take, or an item with every key masked."""
    compiled = native.library()
    if compiled is None or not _has_amx() or (mask is not None and not mask.any(axis=1).all()):
        return False
    batch, queries, heads, dim = query.shape
    keep = None if mask is None else np.ascontiguousarray(mask, np.uint8)
    bounds = None if score_bounds is None else np.ascontiguousarray(score_bounds, np.float32)
    status = compiled.zoo_attention(_native_pool(), query.ctypes.data, key.ctypes.data, value.ctypes.data,
                                    None if keep is None else keep.ctypes.data,
                                    None if bounds is None else bounds.ctypes.data, out.ctypes.data,
                                    int(out.dtype == np.uint16), out.strides[1] // out.itemsize,
                                    out.strides[0] // out.itemsize, batch, queries, key.shape[1], heads, dim)
    return status == 0


def can_prepare_heads() -> bool:
    """Whether ``prepare_heads`` can run: the compiled helper is built and not turned off."""
    return native.library() is not None


def prepare_heads(x: np.ndarray, heads: int, out: np.ndarray, maxima: np.ndarray, weight: np.ndarray | None = None,
                  eps: float = 0.0, scale: float = 1.0, cos: np.ndarray | None = None,
                  sin: np.ndarray | None = None) -> None:
    """Each head of ``x [rows, H*D]`` float32 RMS-normed by ``weight`` (where given), times
    ``scale``, rotated by ``cos``/``sin [rows, D]`` (as ``attention.apply_rope`` takes them, where
    given), into ``out`` as bf16 bits, each head's largest row norm max-ed into ``maxima [H]``: one
    pass of the compiled helper (see ``can_prepare_heads``), on the oneDNN pool. AVX512_BF16 is
    assumed: it runs only on the bf16 path."""
    rows, width = x.shape
    weight = None if weight is None else np.ascontiguousarray(weight, np.float32)  # held through the call
    tables = (cos, sin) if cos is not None else (None, None)
    for array in (x, out, *tables):
        if array is not None and array.strides[-1] != array.itemsize:
            raise ValueError(f"prepare_heads: expected rows of contiguous elements, got strides {array.strides}")
    pointers = [None if a is None else a.ctypes.data for a in (weight, *tables)]
    native.library().zoo_prepare_heads(_native_pool(), x.ctypes.data, x.strides[0] // 4, rows, heads, width // heads,
                                       pointers[0], eps, scale, *pointers[1:],
                                       0 if cos is None else cos.strides[0] // 4, out.ctypes.data,
                                       out.strides[0] // 2, maxima.ctypes.data)


def row_norm_maxima(x: np.ndarray, heads: int) -> np.ndarray:
    """The largest Euclidean norm over the rows of each head of ``x [B, S, H*D]`` float32, ``[B, H]``:
    with a query's and a key's, a bound on their heads' scores (see ``attention``)."""
    batch, length, width = x.shape
    by_head = x.reshape(batch, length, heads, width // heads)
    blocks: list[np.ndarray] = []  # each row block's largest squared norms (list.append is atomic)
    for_row_blocks(length, lambda rows: blocks.append(np.square(by_head[:, rows]).sum(axis=-1).max(axis=1)))
    return np.sqrt(np.max(blocks, axis=0))


# oneDNN's instruction-set caps ($ONEDNN_MAX_CPU_ISA), lowest first, and the CPU flag each first allows.
_ISA_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
             "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX")
_FLAG_CAPS = {"avx512f": "AVX512_CORE", "avx512_bf16": "AVX512_CORE_BF16", "amx_bf16": "AVX512_CORE_AMX",
              "amx_int8": "AVX512_CORE_AMX"}


@cache
def _flags_of_cpu() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@cache
def _cpu_flags() -> set[str]:
    """The CPU's flags, less those above ``$ONEDNN_MAX_CPU_ISA`` where it is set: our kernels are held
    to the instruction sets oneDNN is held to, so one variable makes both behave as on a smaller CPU.
    Read once, as oneDNN reads it."""
    flags = _flags_of_cpu()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in _ISA_CAPS:
        flags = flags - {flag for flag, needs in _FLAG_CAPS.items() if _ISA_CAPS.index(needs) > _ISA_CAPS.index(cap)}
    return flags


def _has_amx() -> bool:
    return "amx_bf16" in _cpu_flags()


def float32_unavailable() -> str | None:
    """Why the float32 oneDNN path should not run (one clause), or None when it can: it needs the
    bundled library and a small product that comes out right. ``$HUNYUAN_ZOO_CPU_ONEDNN=0`` keeps
    float32 on MindSpore's own ops."""
    if os.environ.get("HUNYUAN_ZOO_CPU_ONEDNN", "").strip() == "0":
        return "turned off by HUNYUAN_ZOO_CPU_ONEDNN=0"
    return _float32_self_test()


@cache
def _float32_self_test() -> str | None:
    return _self_test("float32")


@cache
def bf16_unavailable() -> str | None:
    """Why bf16 matmuls cannot run on this machine (one clause), or None when they can.

    They need AVX512_BF16 or AMX (elsewhere oneDNN would emulate bf16, slower than float32),
    the bundled library, and a small product that comes out right. ``$HUNYUAN_ZOO_CPU_BF16=0``
    turns them off."""
    if os.environ.get("HUNYUAN_ZOO_CPU_BF16", "").strip() == "0":
        return "turned off by HUNYUAN_ZOO_CPU_BF16=0"
    if not _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
        if _flags_of_cpu() & {"avx512_bf16", "amx_bf16"}:
            return f"ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']} holds back AVX512_BF16 and AMX-BF16"
        return "this CPU has neither AVX512_BF16 nor AMX-BF16 instructions"
    return _self_test("bf16")


def _self_test(precision: str) -> str | None:
    """Why a small ``linear`` at ``precision`` ("bf16" or "float32") fails, or None when its product
    equals the float64 one of its operands (rounded to bf16 on the bf16 path)."""
    x = np.linspace(-2, 2, 6 * 40, dtype=np.float32).reshape(6, 40)
    weight = np.cos(np.arange(5 * 40, dtype=np.float32)).reshape(5, 40)
    if precision == "bf16":
        x, weight = (to_float32(narrow(a, "BF16"), "BF16") for a in (x, weight))
    try:
        got = linear(x, narrow(weight, "BF16") if precision == "bf16" else weight)
    except (OSError, AttributeError, OneDnnError) as exc:
        return f"oneDNN cannot run {precision} matmuls ({exc})"
    if not np.allclose(got, x.astype(np.float64) @ weight.T.astype(np.float64), rtol=1e-5, atol=1e-5):
        return f"oneDNN's {precision} matmul gave wrong results in a self-test"
    return None
