"""MindSpore building blocks that run on the CPU backend, with checkpoint parameter names.

MindSpore's own ``nn.LayerNorm``/``nn.GroupNorm`` name their parameters
``gamma``/``beta`` and several ``mint`` ops have no CPU kernel, so the norms
here keep PyTorch's ``weight``/``bias`` and are written for the CPU kernels, which
are fast on 2D operands of equal shapes and slow elsewhere. Measured at the
bench-medium sizes (2.4M to 9.4M elements): a bias added by broadcasting takes 5x as
long as ``BiasAdd``; a mean over the last axis of a 4D tensor takes 40x as long as
over a 2D one; ``rsqrt`` costs about 13 ns an element, so it is taken once per row.
So rows are flattened to 2D, statistics are taken per row, and per-row or
per-channel factors are tiled to the full shape before they multiply.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, mint, nn, ops

from plugins.common import int8, onednn
from plugins.common.precision import bf16_operand, computable


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


def _rows(x: Tensor) -> Tensor:
    """``x`` as a 2D ``[rows, last dim]`` tensor."""
    return x.reshape(-1, x.shape[-1])


def _normalize(rows: Tensor, eps: float, centre: bool) -> Tensor:
    """Each row scaled to unit mean square, after subtracting its mean if ``centre``."""
    width = rows.shape[1]
    if centre:
        rows = rows - ops.tile(rows.mean(-1, keep_dims=True), (1, width))
    inverse = ops.rsqrt((rows * rows).mean(-1, keep_dims=True) + eps)
    return rows * ops.tile(inverse, (1, width))


def _affine(rows: Tensor, weight: Parameter | None, bias: Parameter | None) -> Tensor:
    if weight is not None:
        rows = rows * ops.tile(computable(weight, rows.dtype).reshape(1, -1), (rows.shape[0], 1))
    if bias is not None:
        rows = ops.bias_add(rows, computable(bias, rows.dtype))
    return rows


def host(x: Tensor) -> np.ndarray:
    """``x`` as float32 numpy, for oneDNN (no copy for a float32 tensor that is not a view:
    ``asnumpy()`` of a reshaped or sliced tensor copies it)."""
    return (x if x.dtype == ms.float32 else x.float()).asnumpy()


def _float32_rows(x: Tensor) -> np.ndarray:
    """``x`` as a 2D float32 numpy array, for oneDNN."""
    return host(x).reshape(-1, x.shape[-1])


def _like(out: np.ndarray, x: Tensor) -> Tensor:
    """oneDNN's float32 rows as a tensor of ``x``'s leading shape and dtype."""
    out = ms.from_numpy(out.reshape(*x.shape[:-1], out.shape[-1]))
    return out if x.dtype == ms.float32 else out.astype(x.dtype)


def _onednn_norm(x: Tensor, eps: float, weight: Parameter | None, bias: Parameter | None, centre: bool) -> Tensor:
    """The norm in one oneDNN pass per row block (float32), for cells on the oneDNN path."""
    arrays = [None if p is None else computable(p).asnumpy() for p in (weight, bias)]
    return _like(onednn.normalize(_float32_rows(x), eps, *arrays, centre), x)


class LayerNorm(nn.Cell):
    """LayerNorm over the last dim; ``weight``/``bias`` only if ``elementwise_affine``; on
    oneDNN's layer norm with ``onednn_path`` set (see ``use_onednn``)."""

    onednn_path: str | bool = False

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _ones(dim) if elementwise_affine else None
        self.bias = _zeros(dim) if elementwise_affine and bias else None

    def construct(self, x: Tensor) -> Tensor:
        if self.onednn_path:
            return _onednn_norm(x, self.eps, self.weight, self.bias, centre=True)
        out = _affine(_normalize(_rows(x), self.eps, centre=True), self.weight, self.bias)
        return out.reshape(x.shape)


class RMSNorm(nn.Cell):
    """RMSNorm over the last dim, computed in float32 and cast back; on oneDNN's with
    ``onednn_path`` set."""

    onednn_path: str | bool = False

    def __init__(self, dim: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = _ones(dim) if elementwise_affine else None

    def construct(self, x: Tensor) -> Tensor:
        if self.onednn_path:
            return _onednn_norm(x, self.eps, self.weight, None, centre=False)
        out = _affine(_normalize(_rows(x).float(), self.eps, centre=False), self.weight, None)
        return out.reshape(x.shape).astype(x.dtype)


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
        weight = None if self.weight is None else computable(self.weight, x.dtype)
        bias = None if self.bias is None else computable(self.bias, x.dtype)
        return mint.nn.functional.group_norm(x, self.num_groups, weight, bias, self.eps)


ACTIVATIONS = {"gelu_tanh": gelu_tanh, "silu": ops.silu}


class Linear(mint.nn.Linear):
    """``mint.nn.Linear`` (PyTorch's ``weight [out, in]``/``bias`` names and initialisation)
    computed as one 2D ``MatMul`` against the untransposed weight and a ``BiasAdd``, with the
    weights widened to the input's dtype (see ``precision``), then ``activation`` (a name in
    ``ACTIVATIONS``) if given.

    With ``onednn_path`` set (see ``use_onednn``) the product is oneDNN's matmul instead, the
    activation applied inside it: at ``"bf16"`` the input rounded to bf16 and the weight's bf16
    storage read as it is, float32 out; at ``"f32"`` a float32 product; at ``"int8"`` an int8
    product where the weight allows (see ``int8``), else a bf16 one.
    """

    onednn_path: str | bool = False

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.matmul = ops.MatMul(transpose_b=True)
        self.activation = activation

    def construct(self, x: Tensor) -> Tensor:
        if self.onednn_path:
            return self._by_onednn(x)
        out = self.matmul(_rows(x), computable(self.weight, x.dtype))
        if self.bias is not None:
            out = ops.bias_add(out, computable(self.bias, x.dtype))
        if self.activation is not None:
            out = ACTIVATIONS[self.activation](out)
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def _by_onednn(self, x: Tensor) -> Tensor:
        out, = self.on_onednn([{"x": _float32_rows(x)}])
        return _like(out, x)

    def on_onednn(self, calls: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """``onednn_products`` of this layer's weight, bias and activation."""
        return onednn_products(self.weight, self.bias, calls, self.activation, self.onednn_path)


def onednn_products(weight: Parameter, bias: Parameter | None, calls: list[dict[str, np.ndarray]],
                    activation: str | None = None, precision: str = "bf16") -> list[np.ndarray]:
    """``onednn.linear`` with ``weight`` (its leading dim the outputs, the rest flattened, as a
    convolution's), ``bias`` and ``activation``, once per entry of ``calls`` (its other arguments:
    ``x``, and ``gate``, ``residual``, ``out`` where wanted), taking the weight's bf16 bits (or, at
    ``precision`` ``"f32"``, its float32 values; at ``"int8"``, its quantized rows where it has
    them) once for them all."""
    bias = None if bias is None else computable(bias).asnumpy()
    if precision == "int8" and (quantized := int8.operand(weight)) is not None:
        return [int8.linear(weight=quantized, bias=bias, activation=activation, **call) for call in calls]
    operand, done = bf16_operand(weight) if precision != "f32" else (computable(weight).asnumpy(), None)
    operand = operand.reshape(operand.shape[0], -1)
    outs = [onednn.linear(weight=operand, bias=bias, activation=activation, **call) for call in calls]
    if done is not None:
        done()
    return outs


def use_onednn(network: nn.Cell, precision: str) -> None:
    """Switch every cell of ``network`` that has a oneDNN path (an ``onednn_path`` attribute) to it,
    at ``precision``: ``"bf16"`` (bf16 matmul operands), ``"int8"`` (the bf16 path with int8 linear
    layers) or ``"f32"`` (float32 throughout); the norms between the matmuls are float32 each way."""
    for _, cell in network.cells_and_names():
        if hasattr(cell, "onednn_path"):
            cell.onednn_path = precision


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
