"""Embedders: the latent patches, and the conditioning vector from timestep, guidance
and a pooled text vector. Sinusoids arrive precomputed (see ``tables``)."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, mint, nn, ops

from plugins.common.layers import Linear
from plugins.common.precision import computable
from plugins.hunyuanvideo_transformer import onednn_blocks
from plugins.hunyuanvideo_transformer.tables import TIMESTEP_CHANNELS


class MLPEmbedding(nn.Cell):
    """``linear_2(silu(linear_1(x)))``: diffusers' ``TimestepEmbedding`` and, with the
    same names, its ``PixArtAlphaTextProjection`` with ``act_fn="silu"``. With ``onednn_path``
    set, ``onednn_blocks`` computes it (as it does the two cells below)."""

    onednn_path = False

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = Linear(in_features, dim)
        self.linear_2 = Linear(dim, dim)

    def construct(self, x: Tensor) -> Tensor:
        if self.onednn_path:
            return ms.from_numpy(onednn_blocks.mlp_embedding(self, x))
        return self.linear_2(ops.silu(self.linear_1(x)))


class ConditionEmbedding(nn.Cell):
    """``timestep_embedder(sinusoid(t)) + text_embedder(pooled)``, plus
    ``guidance_embedder(sinusoid(1000 * guidance))`` when the model is guidance-distilled."""

    onednn_path = False

    def __init__(self, dim: int, pooled_dim: int, guidance: bool) -> None:
        super().__init__()
        self.timestep_embedder = MLPEmbedding(TIMESTEP_CHANNELS, dim)
        self.text_embedder = MLPEmbedding(pooled_dim, dim)
        self.guidance_embedder = MLPEmbedding(TIMESTEP_CHANNELS, dim) if guidance else None

    def construct(self, timestep_sin: Tensor, pooled: Tensor, guidance_sin: Tensor | None = None) -> Tensor:
        if self.onednn_path:
            return onednn_blocks.condition_embedding(self, timestep_sin, pooled, guidance_sin)
        out = self.timestep_embedder(timestep_sin)
        if self.guidance_embedder is not None:
            out = out + self.guidance_embedder(guidance_sin)
        return out + self.text_embedder(pooled)

    def token_replace(self, zero_sin: Tensor, pooled: Tensor) -> Tensor:
        """The conditioning of the replaced (image) tokens: timestep 0 and the pooled text, no guidance."""
        return self.timestep_embedder(zero_sin) + self.text_embedder(pooled)


class _ConvWeights(nn.Cell):
    """The ``weight [D, C, pt, p, p]`` and ``bias [D]`` of diffusers' patch ``Conv3d``."""

    def __init__(self, in_channels: int, dim: int, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        fan_in = in_channels * math.prod(kernel)
        bound = 1.0 / math.sqrt(fan_in)
        rng = np.random.default_rng()
        self.weight = Parameter(Tensor(rng.uniform(-bound, bound, (dim, in_channels, *kernel)).astype(np.float32)))
        self.bias = Parameter(Tensor(rng.uniform(-bound, bound, (dim,)).astype(np.float32)))


class PatchEmbed(nn.Cell):
    """Non-overlapping 3D patches to tokens. The convolution has stride = kernel, so
    it is one matmul over patches flattened on the host as ``(C, pt, p, p)``."""

    onednn_path = False

    def __init__(self, in_channels: int, dim: int, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        self.proj = _ConvWeights(in_channels, dim, kernel)

    def construct(self, patches: Tensor) -> Tensor:
        if self.onednn_path:
            return onednn_blocks.patch_embedding(self, patches)
        weight = computable(self.proj.weight, patches.dtype)
        weight = weight.reshape(weight.shape[0], -1)
        return mint.nn.functional.linear(patches, weight, computable(self.proj.bias, patches.dtype))
