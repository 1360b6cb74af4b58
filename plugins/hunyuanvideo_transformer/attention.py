"""The three attentions of the transformer, named as diffusers' ``Attention`` modules.

Tensors are ``[B, S, H*D]`` between cells and ``[B, S, H, D]`` while heads are
split. The rotary embedding comes as ``cos``/``sin`` tables covering the whole
joint sequence: text rows are ``cos = 1, sin = 0``, so it leaves text tokens as
they are without slicing the sequence.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, mint, nn, ops

from plugins.common import onednn
from plugins.common.layers import Linear, RMSNorm

_LOWEST = float(np.finfo(np.float32).min)
_MATMUL = ops.MatMul()
_MATMUL_NT = ops.MatMul(transpose_b=True)


def pair_swap(head_dim: int) -> Tensor:
    """The channel order ``1, 0, 3, 2, ...`` that swaps each adjacent pair of a head."""
    order = np.arange(head_dim).reshape(-1, 2)[:, ::-1].reshape(-1)
    return Tensor(order.astype(np.int32))


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor, swap: Tensor) -> Tensor:
    """Rotate each adjacent channel pair ``(a, b)`` of ``x [B, S, H, D]`` by its angle.

    ``sin`` carries the pair's signs (``-sin`` on even channels), so the rotation is
    ``x * cos + x[..., swap] * sin`` with ``swap = pair_swap(D)``; the tables have
    ``x``'s shape. (A gather is several times faster than a flip or a stack on CPU.)
    """
    return x * cos + ops.gather(x, swap, 3) * sin


class _Heads(nn.Cell):
    """``to_q``/``to_k``/``to_v`` with optional RMS norms of query and key per head; with
    ``onednn_path`` set, attention runs on oneDNN's matmuls (see ``_attend``)."""

    onednn_path = False

    def __init__(self, heads: int, head_dim: int, qk_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        dim = heads * head_dim
        self.to_q, self.to_k, self.to_v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.norm_q = RMSNorm(head_dim, eps=1e-6) if qk_norm else None
        self.norm_k = RMSNorm(head_dim, eps=1e-6) if qk_norm else None

    def split(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim)

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        query, key = self.split(self.to_q(x)), self.split(self.to_k(x))
        if self.norm_q is not None:
            query, key = self.norm_q(query), self.norm_k(key)
        return query, key, self.split(self.to_v(x))


def _attend(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, onednn_path: str | bool = False) -> Tensor:
    """Scaled dot-product attention, ``[B, S, H, D]`` in, ``[B, S, H*D]`` out, in float32.

    ``mask [B, 1, 1, Lk]`` is True where a key may be attended to; a masked score is
    the lowest finite value, not -inf, so a fully masked row stays finite (uniform).
    It runs one head at a time on 2D matmuls, which MindSpore's CPU backend does about
    1.4x faster than batched matmuls over all heads at once (measured at 12 x 1536 x 128).
    On the oneDNN path (``"bf16"`` or ``"f32"``), oneDNN's matmuls and softmax run it instead
    (``onednn.attention``).
    """
    batch, length, heads, dim = query.shape
    dtype = query.dtype
    query = query.float() * (1.0 / math.sqrt(dim))
    if onednn_path:
        keep = None if mask is None else mask.asnumpy().reshape(batch, -1)
        out = onednn.attention(query.asnumpy(), key.float().asnumpy(), value.float().asnumpy(), keep,
                               exact=onednn_path == "f32")
        return ms.from_numpy(out).reshape(batch, length, heads * dim).astype(dtype)
    query = query.swapaxes(1, 2)
    key, value = key.float().swapaxes(1, 2), value.float().swapaxes(1, 2)
    items = []
    for b in range(batch):
        hidden = None
        if mask is not None:
            hidden = ops.tile(ops.logical_not(mask[b].reshape(1, -1)), (length, 1))
        outputs = []
        for h in range(heads):
            scores = _MATMUL_NT(query[b, h], key[b, h])
            if hidden is not None:
                scores = ops.masked_fill(scores, hidden, Tensor(_LOWEST, scores.dtype))
            outputs.append(_MATMUL(mint.softmax(scores, -1), value[b, h]))
        items.append(ops.stack(outputs, 1))
    return ops.stack(items).reshape(batch, length, heads * dim).astype(dtype)


class RefinerAttention(_Heads):
    """Self-attention over the text tokens, with an output projection ``to_out.0``."""

    def __init__(self, heads: int, head_dim: int) -> None:
        super().__init__(heads, head_dim, qk_norm=False)
        dim = heads * head_dim
        self.to_out = nn.CellList([Linear(dim, dim), nn.Identity()])

    def construct(self, x: Tensor, mask: Tensor | None) -> Tensor:
        return self.to_out[0](_attend(*self.qkv(x), mask, self.onednn_path))


class JointAttention(_Heads):
    """Dual-stream attention: video through ``to_*``, text through ``add_*_proj``, one
    softmax over both; returns the video and text outputs, each projected back."""

    def __init__(self, heads: int, head_dim: int) -> None:
        super().__init__(heads, head_dim, qk_norm=True)
        self.swap = pair_swap(head_dim)
        dim = heads * head_dim
        self.add_q_proj, self.add_k_proj, self.add_v_proj = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.norm_added_q = RMSNorm(head_dim, eps=1e-6)
        self.norm_added_k = RMSNorm(head_dim, eps=1e-6)
        self.to_out = nn.CellList([Linear(dim, dim), nn.Identity()])
        self.to_add_out = Linear(dim, dim)

    def construct(self, video: Tensor, text: Tensor, cos: Tensor, sin: Tensor,
                  mask: Tensor | None) -> tuple[Tensor, Tensor]:
        query, key, value = self.qkv(video)
        text_query = self.norm_added_q(self.split(self.add_q_proj(text)))
        text_key = self.norm_added_k(self.split(self.add_k_proj(text)))
        text_value = self.split(self.add_v_proj(text))
        query = apply_rope(mint.cat([query, text_query], 1), cos, sin, self.swap)
        key = apply_rope(mint.cat([key, text_key], 1), cos, sin, self.swap)
        out = _attend(query, key, mint.cat([value, text_value], 1), mask, self.onednn_path)
        length = video.shape[1]
        return self.to_out[0](out[:, :length]), self.to_add_out(out[:, length:])


class SingleAttention(_Heads):
    """Single-stream attention over the joint sequence; no output projection (the
    block's ``proj_out`` takes it together with the MLP branch)."""

    def __init__(self, heads: int, head_dim: int) -> None:
        super().__init__(heads, head_dim, qk_norm=True)
        self.swap = pair_swap(head_dim)

    def construct(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None) -> Tensor:
        query, key, value = self.qkv(x)
        query, key = apply_rope(query, cos, sin, self.swap), apply_rope(key, cos, sin, self.swap)
        return _attend(query, key, value, mask, self.onednn_path)
