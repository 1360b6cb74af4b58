"""MindSpore building blocks that run on the CPU backend, with checkpoint parameter names.

MindSpore's own ``nn.LayerNorm``/``nn.GroupNorm`` name their parameters
``gamma``/``beta`` and several ``mint`` ops have no CPU kernel, so the norms
here are written with elementary ops and keep PyTorch's ``weight``/``bias``.
"""

from __future__ import annotations

import math

import numpy as np
from mindspore import Parameter, Tensor, mint, nn, ops


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation, from elementary ops: PyTorch's formula, and on CPU about
    7x faster than MindSpore's fused kernel."""
    return 0.5 * x * (1.0 + ops.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


def gelu(x: Tensor) -> Tensor:
    """Exact GELU."""
    return ops.gelu(x, approximate="none")


def _ones(size: int) -> Parameter:
    return Parameter(Tensor(np.ones(size, np.float32)))


def _zeros(size: int) -> Parameter:
    return Parameter(Tensor(np.zeros(size, np.float32)))


class LayerNorm(nn.Cell):
    """LayerNorm over the last dim; ``weight``/``bias`` only if ``elementwise_affine``."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _ones(dim) if elementwise_affine else None
        self.bias = _zeros(dim) if elementwise_affine and bias else None

    def construct(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keep_dims=True)
        centred = x - mean
        out = centred * ops.rsqrt((centred * centred).mean(-1, keep_dims=True) + self.eps)
        if self.weight is not None:
            out = out * self.weight
        if self.bias is not None:
            out = out + self.bias
        return out


class RMSNorm(nn.Cell):
    """RMSNorm over the last dim, computed in float32 and cast back."""

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _ones(dim) if elementwise_affine else None

    def construct(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.float()
        out = x32 * ops.rsqrt((x32 * x32).mean(-1, keep_dims=True) + self.eps)
        if self.weight is not None:
            out = out * self.weight.float()
        return out.astype(dtype)


class GroupNorm(nn.Cell):
    """GroupNorm over dim 1 of ``[B, C, ...]`` with ``weight``/``bias`` of size C, on MindSpore's
    fused kernel (which has a CPU kernel, and is several times faster than elementary ops)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-6,
                 affine: bool = True) -> None:
        super().__init__()
        self.num_groups, self.eps = num_groups, eps
        self.weight = _ones(num_channels) if affine else None
        self.bias = _zeros(num_channels) if affine else None

    def construct(self, x: Tensor) -> Tensor:
        return mint.nn.functional.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def Linear(in_features: int, out_features: int, bias: bool = True) -> nn.Cell:  # noqa: N802
    """A dense layer with PyTorch's ``weight [out, in]``/``bias`` names."""
    return mint.nn.Linear(in_features, out_features, bias=bias)


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention on ``[B, H, L, D]``.

    ``mask`` is boolean, broadcastable to ``[B, H, Lq, Lk]``, True where attending
    is allowed. Computed in float32.
    """
    dtype = query.dtype
    scale = 1.0 / math.sqrt(query.shape[-1])
    scores = mint.matmul(query.float() * scale, key.float().swapaxes(-1, -2))
    if mask is not None:  # the lowest finite value, not -inf: a fully masked row stays finite (uniform)
        scores = ops.masked_fill(scores, ~mask, Tensor(float(np.finfo(np.float32).min), scores.dtype))
    weights = mint.softmax(scores, -1)
    return mint.matmul(weights, value.float()).astype(dtype)
