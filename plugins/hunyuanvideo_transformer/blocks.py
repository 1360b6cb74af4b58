"""The dual-stream and single-stream transformer blocks, with their adaptive norms.

Modulation vectors are ``[B, 1, D]``, one per item; a norm's ``(shift, scale)``
applies as ``norm(x) * (1 + scale) + shift``. Under token replacement (an image-to-video
variant) the first frame's video tokens are modulated by a second conditioning vector, so
the video stream's vectors come in pairs (see ``Modulation``).
"""

from __future__ import annotations

from mindspore import Tensor, mint, nn, ops

from plugins.common.layers import LayerNorm, Linear
from plugins.hunyuanvideo_transformer import onednn_blocks
from plugins.hunyuanvideo_transformer.attention import JointAttention, SingleAttention


def expand(v: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``v`` repeated along its size-1 dims to ``shape``. MindSpore's CPU kernels are
    several times slower on broadcast operands than on equal shapes, and tiling is cheap."""
    return ops.tile(v, tuple(size // own for size, own in zip(shape, v.shape, strict=True)))


# A modulation vector ``[B, 1, D]``, or under token replacement a pair for the first ``count`` tokens
# and for the others, ``(first, rest, count)``: applied to each part, never tiled to every token at once.
Modulation = Tensor | tuple[Tensor, Tensor, int]


def modulate(x: Tensor, shift: Modulation, scale: Modulation) -> Tensor:
    if isinstance(shift, tuple):
        (first_shift, shift, count), (first_scale, scale, _) = shift, scale
        return mint.cat([modulate(x[:, :count], first_shift, first_scale), modulate(x[:, count:], shift, scale)], 1)
    return x * expand(1 + scale, x.shape) + expand(shift, x.shape)


def gated(x: Tensor, update: Tensor, gate: Modulation) -> Tensor:
    """The residual ``x + update * gate``."""
    if isinstance(gate, tuple):
        first, gate, count = gate
        return mint.cat([gated(x[:, :count], update[:, :count], first), gated(x[:, count:], update[:, count:], gate)],
                        1)
    return x + update * expand(gate, update.shape)


def modulation(linear: nn.Cell, temb: Tensor, parts: int) -> tuple[Tensor, ...]:
    """``linear(silu(temb))`` split into ``parts`` vectors of ``[B, 1, D]``."""
    return mint.chunk(linear(ops.silu(temb)).unsqueeze(1), parts, -1)


class _Projection(nn.Cell):
    """A linear layer with its activation (a name in ``layers.ACTIVATIONS``), named ``proj``
    as in diffusers."""

    def __init__(self, dim_in: int, dim_out: int, activation: str) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out, activation=activation)

    def construct(self, x: Tensor) -> Tensor:
        return self.proj(x)


class FeedForward(nn.Cell):
    """``net.0`` (linear + activation), ``net.1`` (dropout, a no-op here), ``net.2`` (linear)."""

    def __init__(self, dim: int, mult: float, activation: str) -> None:
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.CellList([_Projection(dim, inner, activation), nn.Identity(), Linear(inner, dim)])

    def construct(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class AdaNormZero(nn.Cell):
    """LayerNorm without affine whose six modulation vectors come from the conditioning."""

    def __init__(self, dim: int, parts: int) -> None:
        super().__init__()
        self.parts = parts
        self.linear = Linear(dim, parts * dim)
        self.norm = LayerNorm(dim, eps=1e-6, elementwise_affine=False)

    def construct(self, x: Tensor, temb: Tensor, replace_temb: Tensor | None = None,
                  replaced: int = 0) -> tuple[Modulation, ...]:
        """With ``replace_temb``, the first ``replaced`` tokens take their modulation from it."""
        parts = modulation(self.linear, temb, self.parts)
        if replace_temb is not None:
            firsts = modulation(self.linear, replace_temb, self.parts)
            parts = tuple((first, part, replaced) for first, part in zip(firsts, parts, strict=True))
        shift, scale, *rest = parts
        return (modulate(self.norm(x), shift, scale), *rest)


class AdaNormContinuous(nn.Cell):
    """The final norm: ``(scale, shift)`` from the conditioning, in that order. With ``onednn_path``
    set, ``onednn_blocks`` computes it."""

    onednn_path = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = Linear(dim, 2 * dim)
        self.norm = LayerNorm(dim, eps=1e-6, elementwise_affine=False)

    def construct(self, x: Tensor, temb: Tensor) -> Tensor:
        if self.onednn_path:
            return onednn_blocks.continuous_norm(self, x, temb)
        scale, shift = modulation(self.linear, temb, 2)
        return modulate(self.norm(x), shift, scale)


class DualStreamBlock(nn.Cell):
    """Video and text keep separate modulation, QKV and MLP weights and meet in one
    joint attention. With ``onednn_path`` set, ``onednn_blocks`` computes it."""

    onednn_path = False

    def __init__(self, heads: int, head_dim: int, mlp_ratio: float) -> None:
        super().__init__()
        dim = heads * head_dim
        self.norm1 = AdaNormZero(dim, 6)
        self.norm1_context = AdaNormZero(dim, 6)
        self.attn = JointAttention(heads, head_dim)
        self.norm2 = LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.ff = FeedForward(dim, mlp_ratio, "gelu_tanh")
        self.norm2_context = LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.ff_context = FeedForward(dim, mlp_ratio, "gelu_tanh")

    def construct(self, video: Tensor, text: Tensor, temb: Tensor, cos: Tensor, sin: Tensor,
                  mask: Tensor | None, replace_temb: Tensor | None = None,
                  replaced: int = 0) -> tuple[Tensor, Tensor]:
        if self.onednn_path and onednn_blocks.fusable(self):
            return onednn_blocks.dual_block(self, video, text, temb, cos, sin, mask, replace_temb, replaced)
        norm_video, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(video, temb, replace_temb, replaced)
        norm_text, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(text, temb)
        video_attn, text_attn = self.attn(norm_video, norm_text, cos, sin, mask)
        video = gated(video, video_attn, gate_msa)
        text = gated(text, text_attn, c_gate_msa)
        video = gated(video, self.ff(modulate(self.norm2(video), shift_mlp, scale_mlp)), gate_mlp)
        text = gated(text, self.ff_context(modulate(self.norm2_context(text), c_shift_mlp, c_scale_mlp)), c_gate_mlp)
        return video, text


class SingleStreamBlock(nn.Cell):
    """One stream over the joint ``[video; text]`` sequence: attention and a parallel MLP
    branch, concatenated into ``proj_out``. With ``onednn_path`` set, ``onednn_blocks`` computes it."""

    onednn_path = False

    def __init__(self, heads: int, head_dim: int, mlp_ratio: float) -> None:
        super().__init__()
        dim = heads * head_dim
        mlp_dim = int(dim * mlp_ratio)
        self.attn = SingleAttention(heads, head_dim)
        self.norm = AdaNormZero(dim, 3)
        self.proj_mlp = Linear(dim, mlp_dim, activation="gelu_tanh")
        self.proj_out = Linear(dim + mlp_dim, dim)

    def construct(self, x: Tensor, temb: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None,
                  replace_temb: Tensor | None = None, replaced: int = 0) -> Tensor:
        if self.onednn_path and onednn_blocks.fusable(self):
            return onednn_blocks.single_block(self, x, temb, cos, sin, mask, replace_temb, replaced)
        normed, gate = self.norm(x, temb, replace_temb, replaced)
        mlp = self.proj_mlp(normed)
        attn = self.attn(normed, cos, sin, mask)
        return gated(x, self.proj_out(mint.cat([attn, mlp], -1)), gate)
