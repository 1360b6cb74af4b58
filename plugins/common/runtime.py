"""Process-wide MindSpore settings the built-in components apply when they are built."""

import mindspore as ms


def dispatch_synchronously_on_cpu() -> None:
    """On the CPU backend, MindSpore's asynchronous op dispatch makes a forward pass of
    many small ops an order of magnitude slower (its dispatch threads compete with the
    kernels for the cores); launching synchronously costs nothing there."""
    if ms.get_context("device_target") == "CPU":
        ms.runtime.launch_blocking()
