"""The transformer's cells on the oneDNN path (bf16 or float32 matmuls on the CPU), on numpy
arrays: the blocks, and the embedders and final norm around them.

The same arithmetic as the blocks' ``construct`` (``blocks``, ``attention``, ``refiner``), with
the steps between the matmuls folded into oneDNN calls rather than run as separate MindSpore
ops: each norm applies its modulation (``1 + scale`` and ``shift`` as the norm's own scale and
shift) and writes what the next matmuls read (bf16 bits, or float32 at ``"f32"``); gate and
residual are post-ops of the output projection; query, key and value are written into joint
buffers, so nothing is concatenated; the attention's softmax scale rides in the query norm's
weight. The residual stream, the norms' statistics and the softmax stay float32, as on the
cell-by-cell path.

A block takes this path when it is switched to oneDNN and its linear layers are plain
``Linear``s: a layer that computes otherwise (a split across processes) keeps the cell path.
Nothing here launches a MindSpore op: after each one MindSpore's actor thread spins for about
75 ms of CPU, a core taken from the matmuls. Tensors cross in and out without copies.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from plugins.common import onednn
from plugins.common.layers import Linear, host, onednn_products
from plugins.common.precision import computable

# Rows ``[start, stop)`` of one batch item and the modulation vectors ``[parts, D]`` they take.
Segment = tuple[int, int, np.ndarray]


def fusable(block: nn.Cell) -> bool:
    """Whether every linear layer of ``block`` computes as ``Linear`` does."""
    return all(type(cell).construct is Linear.construct
               for _, cell in block.cells_and_names() if isinstance(cell, Linear))


def _operands(cell: nn.Cell) -> type:
    """The dtype of the matmul operands ``cell`` writes: bf16 bits, or float32 at ``"f32"``."""
    return np.float32 if cell.onednn_path == "f32" else np.uint16


def _tensor(x: np.ndarray) -> Tensor:
    return ms.from_numpy(x)


def _vector(param: ms.Parameter) -> np.ndarray:
    return computable(param).asnumpy()


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.exp(-x))


def _segments(linear: Linear, temb: Tensor, parts: int, length: int, replace_temb: Tensor | None = None,
              replaced: int = 0) -> list[list[Segment]]:
    """Each item's row segments and their modulation vectors, ``linear(silu(temb))`` split in
    ``parts``; under token replacement the first ``replaced`` rows take ``replace_temb``'s."""
    def vectors(condition: Tensor) -> np.ndarray:
        x = host(condition)
        out, = linear.on_onednn([{"x": _silu(x)}])
        return out.reshape(x.shape[0], parts, -1)

    if replace_temb is None:
        return [[(0, length, item)] for item in vectors(temb)]
    return [[(0, replaced, first), (replaced, length, item)]
            for first, item in zip(vectors(replace_temb), vectors(temb), strict=True)]


def _modulated(x: np.ndarray, segments: list[list[Segment]], shift: int, scale: int, eps: float,
               dtype: type) -> np.ndarray:
    """``layer_norm(x) * (1 + scale) + shift``, ``x [B, N, D]``, in bf16 bits or float32 (``dtype``)."""
    out = np.empty(x.shape, dtype)
    for b, item in enumerate(segments):
        for start, stop, vectors in item:
            onednn.normalize(x[b, start:stop], eps, 1 + vectors[scale], vectors[shift], out=out[b, start:stop])
    return out


def _gated(layer: Linear, update: np.ndarray, x: np.ndarray, segments: list[list[Segment]], gate: int) -> np.ndarray:
    """The residual ``x + layer(update) * gate``, the gate and sum inside the matmul."""
    out = np.empty(x.shape, np.float32)
    layer.on_onednn([{"x": update[b, start:stop], "gate": vectors[gate], "residual": x[b, start:stop],
                      "out": out[b, start:stop]}
                     for b, item in enumerate(segments) for start, stop, vectors in item])
    return out


def _project(layer: Linear, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """``layer`` from each ``[B, N, K]`` input into its ``[B, N, D]`` output (float32 or bf16 bits)."""
    layer.on_onednn([{"x": x[b], "out": out[b]} for x, out in pairs for b in range(x.shape[0])])


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """The rotary embedding in place on ``x [N, H, D]`` float32, ``cos``/``sin [N, D]`` as
    ``attention.apply_rope`` takes them (pair signs in ``sin``)."""
    def work(rows: slice) -> None:
        part = x[rows]
        pairs = part.reshape(*part.shape[:2], -1, 2)
        swapped = np.empty_like(pairs)
        swapped[..., 0], swapped[..., 1] = pairs[..., 1], pairs[..., 0]
        swapped = swapped.reshape(part.shape)
        swapped *= sin[rows, None]
        part *= cos[rows, None]
        part += swapped

    onednn.for_row_blocks(x.shape[0], work)


# A stretch of a joint sequence's rows and the RMS norms of its query and key heads: (weight, eps) each.
_Norms = tuple[slice, tuple[np.ndarray, float], tuple[np.ndarray, float]]


class _Joint:
    """Query, key and value of a joint sequence ``[B, S, H*D]``, filled by projections of its
    parts, then normed per head, rotated and (on the bf16 path) rounded to bf16 for the attention;
    the value is projected in ``dtype``, the attention's operand type."""

    def __init__(self, batch: int, length: int, heads: int, head_dim: int, dtype: type) -> None:
        self.heads, self.head_dim = heads, head_dim
        self.query = np.empty((batch, length, heads * head_dim), np.float32)
        self.key = np.empty_like(self.query)
        self.value = np.empty(self.query.shape, dtype)
        self.norms: list[_Norms] = []

    def project(self, attention: nn.Cell, x: np.ndarray, rows: slice, names: tuple[str, str, str]) -> None:
        """``x``'s query, key and value by ``attention``'s layers ``names`` into ``rows``."""
        for name, buffer in zip(names, (self.query, self.key, self.value), strict=True):
            _project(getattr(attention, name), [(x, buffer[:, rows])])

    def norm(self, rows: slice, norm_q: nn.Cell, norm_k: nn.Cell) -> None:
        """RMS norms of query and key heads in ``rows``, with the softmax scale in the query's
        (applied by ``attend``)."""
        scale = np.float32(1.0 / math.sqrt(self.head_dim))
        self.norms.append((rows, (_vector(norm_q.weight) * scale, norm_q.eps), (_vector(norm_k.weight), norm_k.eps)))

    def attend(self, mask: Tensor | None, out: np.ndarray, cos: np.ndarray | None = None,
               sin: np.ndarray | None = None, query_scale: float = 1.0) -> None:
        """Attention into ``out [B, S, H*D]`` (the value's dtype); the norms, ``query_scale`` and the
        rotary embedding (where given) first. The heads' largest query and key norms bound their scores,
        which lets most heads skip the softmax's pass for the row maximum (see ``onednn.attention``)."""
        batch, length, _ = self.query.shape
        exact = self.value.dtype == np.float32
        ready = self._ready if onednn.can_prepare_heads() and not exact else self._ready_by_numpy
        query, key, bounds = ready(cos, sin, query_scale)
        shape = (batch, length, self.heads, self.head_dim)
        keep = None if mask is None else mask.asnumpy().reshape(batch, -1)
        onednn.attention(query.reshape(shape), key.reshape(shape), self.value.reshape(shape), keep, out=out,
                         score_bounds=bounds, exact=exact)

    def _ready(self, cos: np.ndarray | None, sin: np.ndarray | None,
               query_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Query and key in bf16 bits and the bounds of the heads' scores ``[B, H]``, one pass of the
        compiled helper per item and stretch of rows."""
        batch, length, _ = self.query.shape
        query, key = np.empty(self.query.shape, np.uint16), np.empty(self.key.shape, np.uint16)
        maxima = np.zeros((2, batch, self.heads), np.float32)
        stretches = self.norms or [(slice(0, length), (None, 0.0), (None, 0.0))]
        for b in range(batch):
            for rows, query_norm, key_norm in stretches:
                tables = {} if cos is None else {"cos": cos[rows], "sin": sin[rows]}
                for side, (source, target, (weight, eps), scale) in enumerate(
                        ((self.query, query, query_norm, query_scale), (self.key, key, key_norm, 1.0))):
                    onednn.prepare_heads(source[b, rows], self.heads, target[b, rows], maxima[side, b], weight, eps,
                                         scale, **tables)
        return query, key, maxima[0] * maxima[1]

    def _ready_by_numpy(self, cos: np.ndarray | None, sin: np.ndarray | None,
                        query_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``_ready`` where the compiled helper is not built or the attention is float32: oneDNN norms in
        place, numpy rotation; float32 stays float32."""
        for rows, *norms in self.norms:
            for buffer, (weight, eps) in zip((self.query, self.key), norms, strict=True):
                for item in buffer[:, rows]:
                    heads = item.reshape(-1, self.head_dim)
                    onednn.normalize(heads, eps, weight, centre=False, out=heads)
        if query_scale != 1.0:
            self.query *= np.float32(query_scale)
        if cos is not None:
            for buffer in (self.query, self.key):
                for item in buffer:
                    _rotate(item.reshape(item.shape[0], self.heads, self.head_dim), cos, sin)
        if self.value.dtype == np.float32:
            return self.query, self.key, None
        bounds = onednn.row_norm_maxima(self.query, self.heads) * onednn.row_norm_maxima(self.key, self.heads)
        return onednn.to_bf16(self.query), onednn.to_bf16(self.key), bounds


def _tables(cos: Tensor, sin: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The rotary tables ``[S, D]`` from the blocks' ``[B or 1, S, H or 1, D]``."""
    return host(cos)[0, :, 0], host(sin)[0, :, 0]


def dual_block(block: nn.Cell, video: Tensor, text: Tensor, temb: Tensor, cos: Tensor, sin: Tensor,
               mask: Tensor | None, replace_temb: Tensor | None, replaced: int) -> tuple[Tensor, Tensor]:
    """``DualStreamBlock.construct`` on oneDNN."""
    video, text = host(video), host(text)
    batch, length, _ = video.shape
    attn = block.attn
    video_mod = _segments(block.norm1.linear, temb, 6, length, replace_temb, replaced)
    text_mod = _segments(block.norm1_context.linear, temb, 6, text.shape[1])
    operands = _operands(block)
    joint = _Joint(batch, length + text.shape[1], attn.heads, attn.head_dim, operands)
    video_rows, text_rows = slice(0, length), slice(length, None)
    joint.project(attn, _modulated(video, video_mod, 0, 1, block.norm1.norm.eps, operands), video_rows,
                  ("to_q", "to_k", "to_v"))
    joint.project(attn, _modulated(text, text_mod, 0, 1, block.norm1_context.norm.eps, operands), text_rows,
                  ("add_q_proj", "add_k_proj", "add_v_proj"))
    joint.norm(video_rows, attn.norm_q, attn.norm_k)
    joint.norm(text_rows, attn.norm_added_q, attn.norm_added_k)
    out = np.empty(joint.value.shape, operands)
    joint.attend(mask, out, *_tables(cos, sin))
    video = _gated(attn.to_out[0], out[:, video_rows], video, video_mod, 2)
    text = _gated(attn.to_add_out, out[:, text_rows], text, text_mod, 2)
    video = _feed_forward(block.ff, _modulated(video, video_mod, 3, 4, block.norm2.eps, operands), video, video_mod)
    text = _feed_forward(block.ff_context, _modulated(text, text_mod, 3, 4, block.norm2_context.eps, operands),
                         text, text_mod)
    return _tensor(video), _tensor(text)


def _feed_forward(ff: nn.Cell, normed: np.ndarray, x: np.ndarray, segments: list[list[Segment]],
                  gate: int = 5) -> np.ndarray:
    """``x + ff(normed) * gate``, the hidden layer kept in ``normed``'s dtype (bf16 bits or float32)."""
    up = ff.net[0].proj
    hidden = np.empty((*normed.shape[:2], up.weight.shape[0]), normed.dtype)
    _project(up, [(normed, hidden)])
    return _gated(ff.net[2], hidden, x, segments, gate)


def single_block(block: nn.Cell, x: Tensor, temb: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                 replace_temb: Tensor | None, replaced: int) -> Tensor:
    """``SingleStreamBlock.construct`` on oneDNN: attention and MLP write their halves of
    ``proj_out``'s input side by side."""
    x = host(x)
    batch, length, dim = x.shape
    attn = block.attn
    modulation = _segments(block.norm.linear, temb, 3, length, replace_temb, replaced)
    operands = _operands(block)
    normed = _modulated(x, modulation, 0, 1, block.norm.norm.eps, operands)
    both = np.empty((batch, length, dim + block.proj_mlp.weight.shape[0]), operands)
    _project(block.proj_mlp, [(normed, both[..., dim:])])
    joint = _Joint(batch, length, attn.heads, attn.head_dim, operands)
    every = slice(None)
    joint.project(attn, normed, every, ("to_q", "to_k", "to_v"))
    joint.norm(every, attn.norm_q, attn.norm_k)
    joint.attend(mask, both[..., :dim], *_tables(cos, sin))
    return _tensor(_gated(block.proj_out, both, x, modulation, 2))


def refiner_block(block: nn.Cell, x: Tensor, temb: Tensor, mask: Tensor | None) -> Tensor:
    """``RefinerBlock.construct`` on oneDNN."""
    x = host(x)
    batch, length, _ = x.shape
    attn = block.attn
    gates = _segments(block.norm_out.linear, temb, 2, length)
    operands = _operands(block)
    normed = _affine_norm(block.norm1, x, operands)
    joint = _Joint(batch, length, attn.heads, attn.head_dim, operands)
    joint.project(attn, normed, slice(None), ("to_q", "to_k", "to_v"))
    out = np.empty(joint.value.shape, operands)
    joint.attend(mask, out, query_scale=1.0 / math.sqrt(attn.head_dim))
    x = _gated(attn.to_out[0], out, x, gates, 0)
    return _tensor(_feed_forward(block.ff, _affine_norm(block.norm2, x, operands), x, gates, 1))


def _affine_norm(norm: nn.Cell, x: np.ndarray, dtype: type) -> np.ndarray:
    """A ``LayerNorm`` with its own weight and bias, of ``x [B, N, D]`` into bf16 bits or float32."""
    out = np.empty(x.shape, dtype)
    onednn.normalize(x.reshape(-1, x.shape[-1]), norm.eps, _vector(norm.weight), _vector(norm.bias),
                     out=out.reshape(-1, x.shape[-1]))
    return out


def mlp_embedding(cell: nn.Cell, x: Tensor) -> np.ndarray:
    """``MLPEmbedding.construct``: ``linear_2(silu(linear_1(x)))``."""
    hidden, = cell.linear_1.on_onednn([{"x": host(x)}])
    out, = cell.linear_2.on_onednn([{"x": _silu(hidden)}])
    return out


def condition_embedding(cell: nn.Cell, timestep_sin: Tensor, pooled: Tensor, guidance_sin: Tensor | None) -> Tensor:
    """``ConditionEmbedding.construct``."""
    out = mlp_embedding(cell.timestep_embedder, timestep_sin)
    if cell.guidance_embedder is not None:
        out = out + mlp_embedding(cell.guidance_embedder, guidance_sin)
    return _tensor(out + mlp_embedding(cell.text_embedder, pooled))


def patch_embedding(cell: nn.Cell, patches: Tensor) -> Tensor:
    """``PatchEmbed.construct``: the patch convolution's weight read as a ``[D, C*pt*p*p]`` matrix."""
    patches = host(patches)
    out, = onednn_products(cell.proj.weight, cell.proj.bias, [{"x": patches.reshape(-1, patches.shape[-1])}],
                           precision=cell.onednn_path)
    return _tensor(out.reshape(*patches.shape[:2], -1))


def token_refiner(cell: nn.Cell, text: Tensor, timestep_sin: Tensor, real: Tensor, mask: Tensor | None) -> Tensor:
    """``TokenRefiner.construct``: the masked mean of the text, then its blocks (each on this path)."""
    hidden, weights = host(text), host(real)
    temb = cell.time_text_embed(timestep_sin, _tensor((hidden * weights).sum(1) / weights.sum(1)))
    projected = np.empty((*hidden.shape[:2], cell.proj_in.weight.shape[0]), np.float32)
    _project(cell.proj_in, [(hidden, projected)])
    return cell.token_refiner(_tensor(projected), temb, mask)


def continuous_norm(cell: nn.Cell, x: Tensor, temb: Tensor) -> Tensor:
    """``AdaNormContinuous.construct``: its vectors come as ``(scale, shift)``."""
    x = host(x)
    return _tensor(_modulated(x, _segments(cell.linear, temb, 2, x.shape[1]), 1, 0, cell.norm.eps, np.float32))


def concatenate(video: Tensor, text: Tensor) -> Tensor:
    """The joint sequence ``[video; text]`` for the single-stream blocks."""
    return _tensor(np.concatenate([host(video), host(text)], axis=1))


def split(joint: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """The joint sequence's video and text tokens, each contiguous."""
    joint = host(joint)
    return _tensor(np.ascontiguousarray(joint[:, :length])), _tensor(np.ascontiguousarray(joint[:, length:]))
