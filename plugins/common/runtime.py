"""Process-wide MindSpore settings and per-device choices the built-in components make when built."""

import sys

import mindspore as ms
import numpy as np
from mindspore import nn

from plugins.common import int8, native, onednn
from plugins.common.layers import use_onednn
from plugins.common.precision import stored_of

_NOTICES: set[str] = set()


def dispatch_synchronously_on_cpu() -> None:
    """On the CPU backend, MindSpore's asynchronous op dispatch makes a forward pass of
    many small ops an order of magnitude slower (its dispatch threads compete with the
    kernels for the cores); launching synchronously costs nothing there."""
    if ms.get_context("device_target") == "CPU":
        ms.runtime.launch_blocking()


def compute_dtype(name: str) -> ms.dtype:
    """The dtype activations are held in: on CPU always float32 (a bf16 ``compute_dtype`` there
    means bf16 matmuls with float32 sums, int8 int8 linear layers, see ``apply_matmul_precision``);
    elsewhere ``auto`` is bfloat16."""
    on_cpu = ms.get_context("device_target") == "CPU"
    if not on_cpu and name == "int8":
        raise ValueError("compute_dtype='int8' is the CPU's int8 linear layers (AMX); use bfloat16 or auto "
                         "on this device")
    if on_cpu and name == "float16":
        raise ValueError("compute_dtype='float16': MindSpore's CPU backend has no float16 batched matmul "
                         "kernels; use float32, bfloat16 or auto on CPU. To save memory, keep the weights "
                         "narrow with weight_dtype='float16' instead")
    if on_cpu:
        return ms.float32
    return ms.bfloat16 if name == "auto" else {"float32": ms.float32, "bfloat16": ms.bfloat16,
                                                "float16": ms.float16}[name]


def apply_matmul_precision(name: str, network: nn.Cell, what: str, float32_on_onednn: bool = False) -> None:
    """Switch ``network``'s matmuls to bf16 on this CPU (``plugins.common.onednn``) where they should:
    when ``compute_dtype`` is bfloat16, or auto and most weights are held in 16 bits (bf16, or fp16
    as the published LLaMA is: the precision the checkpoint was published in). ``int8`` is that
    path with int8 linear layers (see ``int8``), where the CPU has AMX-INT8. Where the CPU cannot,
    one line says so and the next precision down is used: bf16, then float32. Float32 runs on
    MindSpore's ops, or with ``float32_on_onednn`` on oneDNN's float32 path where it can (see
    ``onednn.float32_unavailable``)."""
    if ms.get_context("device_target") != "CPU":
        return
    if name == "int8":
        if (reason := int8.unavailable()) is None:
            use_onednn(network, "int8")
            return
        _notice(f"{what}: computing in bf16, not int8: {reason}")
        name = "bfloat16"
    if name == "bfloat16" or (name == "auto" and _mostly_half(network)):
        reason = onednn.bf16_unavailable()
        if reason is None:
            use_onednn(network, "bf16")
            if (absent := native.missing()) is not None:
                _notice(f"{what}: bf16 without the compiled thread pool and kernels (slower): {absent}")
            return
        _notice(f"{what}: computing in float32, not bf16: {reason}")
    if float32_on_onednn and onednn.float32_unavailable() is None:
        use_onednn(network, "f32")


def _notice(line: str) -> None:
    """``line`` on stderr, once per process."""
    if line not in _NOTICES:
        _NOTICES.add(line)
        print(line, file=sys.stderr)


def _mostly_half(network: nn.Cell) -> bool:
    sizes = {True: 0, False: 0}
    for param in network.get_parameters():
        stored = stored_of(param)
        sizes[stored is not None and stored.dtype in ("BF16", "F16")] += int(np.prod(param.shape))
    return sizes[True] > sizes[False]
