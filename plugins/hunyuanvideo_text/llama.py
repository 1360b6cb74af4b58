"""transformers' ``LlamaModel`` in MindSpore: RMSNorm, rotary positions, grouped-query
attention, SwiGLU. Attribute names equal transformers' module names, so the
parameters are named as in its checkpoints."""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, mint, nn, ops
from transformers import LlamaConfig

from plugins.common.layers import Linear, RMSNorm, attention
from plugins.hunyuanvideo_text.layers import Embedding


def check_supported(config: LlamaConfig) -> None:
    """Refuse, by name, the LLaMA variants this port does not implement."""
    rope = (config.rope_parameters or {}).get("rope_type", "default")
    if rope != "default":
        raise ValueError(f"LLaMA text encoder: rope_type {rope!r} is not supported (only 'default')")
    if config.hidden_act != "silu":
        raise ValueError(f"LLaMA text encoder: hidden_act {config.hidden_act!r} is not supported "
                         f"(only 'silu', LLaMA's SwiGLU)")


def head_dim(config: LlamaConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class Rotary:
    """Rotary positions ``0 .. L-1``, or ``positions [B, L]`` given (as transformers'
    ``position_ids``): ``x * cos + rotate_half(x) * sin``, with ``cos``/``sin``
    ``[1 or B, 1, L, head_dim]`` in float32 as transformers computes them. ``rotate_half`` (the
    two halves swapped, the new first half negated) is a product with a signed permutation,
    exact in float32 and cheaper on MindSpore's CPU backend than slicing a tensor."""

    def __init__(self, config: LlamaConfig, length: int, positions: np.ndarray | None = None) -> None:
        dim = head_dim(config)
        base = np.float32(config.rope_parameters["rope_theta"])
        inv_freq = np.float32(1.0) / base ** (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim))
        if positions is None:
            positions = np.arange(length)[None]
        freqs = np.asarray(positions, np.float32)[..., None] * inv_freq
        angles = np.concatenate([freqs, freqs], axis=-1)[:, None]
        self.cos, self.sin = Tensor(np.cos(angles)), Tensor(np.sin(angles))
        half = dim // 2
        swap = np.zeros((dim, dim), np.float32)
        swap[np.arange(half) + half, np.arange(half)] = -1
        swap[np.arange(half), np.arange(half) + half] = 1
        self.swap = Tensor(swap)

    def __call__(self, x: Tensor) -> Tensor:
        return x * self.cos + mint.matmul(x, self.swap) * self.sin


class LlamaAttention(nn.Cell):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = head_dim(config)
        bias = config.attention_bias
        self.q_proj = Linear(config.hidden_size, self.heads * self.head_dim, bias)
        self.k_proj = Linear(config.hidden_size, self.kv_heads * self.head_dim, bias)
        self.v_proj = Linear(config.hidden_size, self.kv_heads * self.head_dim, bias)
        self.o_proj = Linear(self.heads * self.head_dim, config.hidden_size, bias)

    def _heads(self, x: Tensor, count: int) -> Tensor:
        batch, length = x.shape[:2]
        return x.reshape(batch, length, count, self.head_dim).swapaxes(1, 2)

    def _repeat_kv(self, x: Tensor) -> Tensor:
        """Each key/value head serves ``heads / kv_heads`` consecutive query heads."""
        repeat = self.heads // self.kv_heads
        if repeat == 1:
            return x
        batch, _, length, dim = x.shape
        expanded = ops.broadcast_to(x[:, :, None], (batch, self.kv_heads, repeat, length, dim))
        return expanded.reshape(batch, self.heads, length, dim)

    def construct(self, x: Tensor, mask: Tensor, rotary: Rotary) -> Tensor:
        batch, length = x.shape[:2]
        query = rotary(self._heads(self.q_proj(x), self.heads))
        key = rotary(self._heads(self.k_proj(x), self.kv_heads))
        value = self._heads(self.v_proj(x), self.kv_heads)
        out = attention(query, self._repeat_kv(key), self._repeat_kv(value), mask)
        return self.o_proj(out.swapaxes(1, 2).reshape(batch, length, -1))


class LlamaMLP(nn.Cell):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        width, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = Linear(width, inner, bias)
        self.up_proj = Linear(width, inner, bias)
        self.down_proj = Linear(inner, width, bias)

    def construct(self, x: Tensor) -> Tensor:
        return self.down_proj(ops.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Cell):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def construct(self, x: Tensor, mask: Tensor, rotary: Rotary) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), mask, rotary)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Cell):
    """The decoder stack; ``construct`` returns one entry of transformers' ``hidden_states``."""

    def __init__(self, config: LlamaConfig, compute: ms.dtype = ms.float32) -> None:
        super().__init__()
        check_supported(config)
        self.config, self.compute = config, compute
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.CellList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def construct(self, input_ids: Tensor, mask: Tensor, index: int) -> Tensor:
        """``hidden_states[index]`` (0 <= index <= num_hidden_layers): the embeddings, the output
        of layer ``index``, or, for the last, the normed output; later layers are not run."""
        return self.from_embeddings(self.embed_tokens(input_ids), mask, index)

    def from_embeddings(self, embeddings: Tensor, mask: Tensor, index: int,
                        positions: np.ndarray | None = None) -> Tensor:
        """``hidden_states[index]`` of input embeddings ``[B, L, D]`` (transformers'
        ``inputs_embeds``), at ``positions [B, L]`` (default ``0 .. L-1``)."""
        x = embeddings.astype(self.compute)
        rotary = Rotary(self.config, embeddings.shape[1], positions)
        for layer in self.layers[:index]:
            x = layer(x, mask, rotary)
        return self.norm(x) if index == len(self.layers) else x
