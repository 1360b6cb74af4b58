"""The token refiner (diffusers' ``context_embedder``): text embeddings projected to the
model width and refined by self-attention blocks conditioned on the timestep and on
the masked mean of the text."""

from __future__ import annotations

from mindspore import Tensor, nn

from plugins.common.layers import LayerNorm, Linear
from plugins.hunyuanvideo_transformer import onednn_blocks
from plugins.hunyuanvideo_transformer.attention import RefinerAttention
from plugins.hunyuanvideo_transformer.blocks import FeedForward, gated, modulation
from plugins.hunyuanvideo_transformer.embeddings import ConditionEmbedding

# diffusers builds the refiner with its own default MLP ratio, whatever the config's.
REFINER_MLP_RATIO = 4.0


class _GateNorm(nn.Cell):
    """``norm_out``: two gates (attention, MLP) from the conditioning."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = Linear(dim, 2 * dim)

    def construct(self, temb: Tensor) -> tuple[Tensor, ...]:
        return modulation(self.linear, temb, 2)


class RefinerBlock(nn.Cell):
    """With ``onednn_path`` set, ``onednn_blocks`` computes it."""

    onednn_path = False

    def __init__(self, heads: int, head_dim: int) -> None:
        super().__init__()
        dim = heads * head_dim
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = RefinerAttention(heads, head_dim)
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.ff = FeedForward(dim, REFINER_MLP_RATIO, "silu")
        self.norm_out = _GateNorm(dim)

    def construct(self, x: Tensor, temb: Tensor, mask: Tensor | None) -> Tensor:
        if self.onednn_path and onednn_blocks.fusable(self):
            return onednn_blocks.refiner_block(self, x, temb, mask)
        gate_msa, gate_mlp = self.norm_out(temb)
        x = gated(x, self.attn(self.norm1(x), mask), gate_msa)
        return gated(x, self.ff(self.norm2(x)), gate_mlp)


class _RefinerBlocks(nn.Cell):
    def __init__(self, heads: int, head_dim: int, layers: int) -> None:
        super().__init__()
        self.refiner_blocks = nn.CellList([RefinerBlock(heads, head_dim) for _ in range(layers)])

    def construct(self, x: Tensor, temb: Tensor, mask: Tensor | None) -> Tensor:
        for block in self.refiner_blocks:
            x = block(x, temb, mask)
        return x


class TokenRefiner(nn.Cell):
    """``text [B, L, text_dim]`` -> ``[B, L, heads * head_dim]``.

    ``real [B, L, 1]`` is 1.0 at real tokens (for the mean); ``mask [B, 1, 1, L]`` is
    the key mask of the self-attention, or None when every token is real. With ``onednn_path``
    set, ``onednn_blocks`` computes it.
    """

    onednn_path = False

    def __init__(self, text_dim: int, heads: int, head_dim: int, layers: int) -> None:
        super().__init__()
        dim = heads * head_dim
        self.time_text_embed = ConditionEmbedding(dim, text_dim, guidance=False)
        self.proj_in = Linear(text_dim, dim)
        self.token_refiner = _RefinerBlocks(heads, head_dim, layers)

    def construct(self, text: Tensor, timestep_sin: Tensor, real: Tensor, mask: Tensor | None) -> Tensor:
        if self.onednn_path:
            return onednn_blocks.token_refiner(self, text, timestep_sin, real, mask)
        pooled = (text * real).sum(1) / real.sum(1)
        temb = self.time_text_embed(timestep_sin, pooled)
        return self.token_refiner(self.proj_in(text), temb, mask)
