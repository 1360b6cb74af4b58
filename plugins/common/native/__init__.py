"""The compiled helpers (``threadpool.cpp``, ``attention.cpp``, ``heads.cpp``, ``linear.cpp``),
built by the project's install step (``setup.py``) into ``_native`` and called through
``ctypes``. They are optional: where the build failed, or ``$HUNYUAN_ZOO_NATIVE=0``,
``library()`` is None and the oneDNN path runs without them."""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import cache


def _turned_off() -> bool:
    return os.environ.get("HUNYUAN_ZOO_NATIVE", "").strip() == "0"


def missing() -> str | None:
    """Why the compiled module is not used (one clause), or None when it is."""
    if _turned_off():
        return "turned off by HUNYUAN_ZOO_NATIVE=0"
    if library() is None:
        return "it was not built at install (is a C++ compiler there? reinstall with `pip install -e .`)"
    return None


@cache
def library() -> ctypes.CDLL | None:
    """The compiled module, its functions typed; None where it is not there or turned off."""
    if _turned_off():
        return None
    spec = importlib.util.find_spec("plugins.common.native._native")
    if spec is None or spec.origin is None:
        return None
    native = ctypes.CDLL(spec.origin)
    vp, i32, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    native.zoo_threadpool_create.argtypes, native.zoo_threadpool_create.restype = [i32, i32], vp
    native.zoo_attention.argtypes = [vp, vp, vp, vp, vp, vp, vp, i32, i64, i64, i32, i32, i32, i32, i32]
    native.zoo_attention.restype = i32
    f32 = ctypes.c_float
    native.zoo_prepare_heads.argtypes = [vp, vp, i64, i32, i32, i32, vp, f32, f32, vp, vp, i64, vp, i64, vp]
    native.zoo_prepare_heads.restype = None
    native.zoo_linear.argtypes = [vp, vp, i32, i64, i32, i32, vp, i32, vp, i32, vp, vp, i64, vp, i32, i64]
    native.zoo_linear.restype = i32
    native.zoo_linear_int8.argtypes = [vp, vp, i32, i64, i32, i32, vp, vp, i32, vp, i32, vp, vp, i64, vp, i32, i64]
    native.zoo_linear_int8.restype = i32
    native.zoo_quantize_rows.argtypes, native.zoo_quantize_rows.restype = [vp, vp, i32, i64, i32, i32, vp, vp], None
    return native
