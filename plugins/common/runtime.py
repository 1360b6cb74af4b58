"""Process-wide MindSpore settings and per-device choices the built-in components make when built."""

import mindspore as ms


def dispatch_synchronously_on_cpu() -> None:
    """On the CPU backend, MindSpore's asynchronous op dispatch makes a forward pass of
    many small ops an order of magnitude slower (its dispatch threads compete with the
    kernels for the cores); launching synchronously costs nothing there."""
    if ms.get_context("device_target") == "CPU":
        ms.runtime.launch_blocking()


def compute_dtype(name: str) -> ms.dtype:
    """The dtype layers compute in: ``auto`` is float32 on CPU, whose backend has no bf16 matmul
    (and no fp16 batched matmul), and bfloat16 on a device that has bf16 matmuls."""
    on_cpu = ms.get_context("device_target") == "CPU"
    if name == "auto":
        return ms.float32 if on_cpu else ms.bfloat16
    if on_cpu and name != "float32":
        raise ValueError(f"compute_dtype={name!r}: MindSpore's CPU backend has no {name} matmul kernels; "
                         f"use float32 (or auto) on CPU. To save memory, keep the weights narrow with "
                         f"weight_dtype={name!r} instead")
    return {"float32": ms.float32, "bfloat16": ms.bfloat16, "float16": ms.float16}[name]
