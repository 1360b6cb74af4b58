"""``HunyuanVideoTransformer3D``: the network, as a MindSpore ``Cell`` whose parameter
names are those of diffusers' ``HunyuanVideoTransformer3DModel``.

It works on tokens: the host patchifies the latents, computes the sinusoids and
rotary tables, and unpatchifies the result (see ``backbone``).
"""

from __future__ import annotations

from mindspore import Tensor, mint, nn

from plugins.common.layers import Linear
from plugins.hunyuanvideo_transformer import onednn_blocks
from plugins.hunyuanvideo_transformer.blocks import AdaNormContinuous, DualStreamBlock, SingleStreamBlock, expand
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from plugins.hunyuanvideo_transformer.embeddings import ConditionEmbedding, MLPEmbedding, PatchEmbed
from plugins.hunyuanvideo_transformer.refiner import RefinerBlock, TokenRefiner

# The cells ``onednn_blocks`` computes whole when they are switched to oneDNN (their layers are
# switched too, and compute cell by cell where these are not).
WHOLE_ON_ONEDNN = (DualStreamBlock, SingleStreamBlock, RefinerBlock, TokenRefiner, ConditionEmbedding, MLPEmbedding,
                   PatchEmbed, AdaNormContinuous)


def blocks_on_host(network: nn.Cell) -> bool:
    """Whether ``onednn_blocks`` computes every block of ``network`` (the transformer, or a cache
    network sharing its cells), which reads the rotary tables untiled."""
    return all(block.onednn_path and onednn_blocks.fusable(block)
               for block in (*network.transformer_blocks, *network.single_transformer_blocks))


class HunyuanVideoTransformer3D(nn.Cell):
    def __init__(self, config: HunyuanVideoTransformerConfig) -> None:
        super().__init__()
        heads, head_dim, dim = config.num_attention_heads, config.attention_head_dim, config.inner_dim
        self.heads = heads
        patch = (config.patch_size_t, config.patch_size, config.patch_size)
        self.x_embedder = PatchEmbed(config.in_channels, dim, patch)
        self.context_embedder = TokenRefiner(config.text_embed_dim, heads, head_dim,
                                             config.num_refiner_layers)
        self.time_text_embed = ConditionEmbedding(dim, config.pooled_projection_dim, config.guidance_embeds)
        self.transformer_blocks = nn.CellList(
            [DualStreamBlock(heads, head_dim, config.mlp_ratio) for _ in range(config.num_layers)])
        self.single_transformer_blocks = nn.CellList(
            [SingleStreamBlock(heads, head_dim, config.mlp_ratio) for _ in range(config.num_single_layers)])
        self.norm_out = AdaNormContinuous(dim)
        self.proj_out = Linear(dim, config.patch_size_t * config.patch_size ** 2 * config.out_channels)

    def construct(self, patches: Tensor, timestep_sin: Tensor, guidance_sin: Tensor | None, text: Tensor,
                  real: Tensor, pooled: Tensor, cos: Tensor, sin: Tensor, text_mask: Tensor | None,
                  joint_mask: Tensor | None, zero_sin: Tensor | None = None, replaced: int = 0) -> Tensor:
        """Video tokens ``[B, N, C_in*pt*p*p]`` -> output tokens ``[B, N, C_out*pt*p*p]``.

        ``cos``/``sin [1, N + L, 1, head_dim]`` are the rotary tables of the joint sequence
        (tiled to the heads and batch once per call);
        ``real [B, L, 1]`` marks real text tokens; ``text_mask [B, 1, 1, L]`` and
        ``joint_mask [B, 1, 1, N + L]`` are the attention key masks (None: no padding).
        Token replacement: ``zero_sin`` is the sinusoid of timestep 0, and the first ``replaced``
        video tokens (the image's frame) are modulated by the conditioning it gives.
        """
        video, text, temb, cos, sin = self.embed(patches, timestep_sin, guidance_sin, text, real, pooled, cos, sin,
                                                 text_mask)
        replace_temb = None if zero_sin is None else self.time_text_embed.token_replace(zero_sin, pooled)
        video, text = self.run_blocks(list(self.transformer_blocks), list(self.single_transformer_blocks),
                                      video, text, temb, cos, sin, joint_mask, replace_temb, replaced)
        return self.proj_out(self.norm_out(video, temb))

    def embed(self, patches: Tensor, timestep_sin: Tensor, guidance_sin: Tensor | None, text: Tensor,
              real: Tensor, pooled: Tensor, cos: Tensor, sin: Tensor,
              text_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Before the blocks: video tokens, refined text, the conditioning ``temb``, and the rotary
        tables tiled to the batch and heads."""
        temb = self.time_text_embed(timestep_sin, pooled, guidance_sin)
        if not blocks_on_host(self):  # (tiling launches a MindSpore op, whose actor thread then spins)
            rope_shape = (patches.shape[0], cos.shape[1], self.heads, cos.shape[3])
            cos, sin = expand(cos, rope_shape), expand(sin, rope_shape)
        return self.x_embedder(patches), self.context_embedder(text, timestep_sin, real, text_mask), temb, cos, sin

    @staticmethod
    def run_blocks(dual: list[nn.Cell], single: list[nn.Cell], video: Tensor, text: Tensor, temb: Tensor,
                   cos: Tensor, sin: Tensor, joint_mask: Tensor | None, replace_temb: Tensor | None = None,
                   replaced: int = 0) -> tuple[Tensor, Tensor]:
        """Some dual-stream blocks, then some single-stream blocks on the joint sequence;
        the video and text tokens after them."""
        for block in dual:
            video, text = block(video, text, temb, cos, sin, joint_mask, replace_temb, replaced)
        if single:
            length, on_host = video.shape[1], single[0].onednn_path  # (onednn_blocks: no MindSpore op)
            joint = onednn_blocks.concatenate(video, text) if on_host else mint.cat([video, text], 1)
            for block in single:
                joint = block(joint, temb, cos, sin, joint_mask, replace_temb, replaced)
            video, text = onednn_blocks.split(joint, length) if on_host else (joint[:, :length], joint[:, length:])
        return video, text
