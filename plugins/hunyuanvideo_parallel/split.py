"""The transformer network split across a group: its blocks' linear layers replaced by each rank's
slices (see ``layers``), everything else (embedders, token refiner, final norm and projection, about
3% of the 13B weights) held whole on every rank.

Per block, a rank holds ``heads / size`` attention heads (query, key and value columns; the output
projection's matching input columns), ``1 / size`` of the MLP's hidden features, and ``1 / size`` of
the modulation vectors, gathered whole before use (they depend only on the conditioning, so that
gather is a few KB). A dual-stream block then costs an ``AllReduce`` after each output projection
(video and text, attention and MLP) and a single-stream block one, after its ``proj_out``.
The blocks' own code runs unchanged on the replaced layers, so what the transformer computes is
what this computes.
"""

from __future__ import annotations

import numpy as np
from mindspore import nn

from plugins.common.precision import Stored, store
from plugins.hunyuanvideo_parallel.comm import Group
from plugins.hunyuanvideo_parallel.config import check_divides
from plugins.hunyuanvideo_parallel.layers import ColumnLinear, RowLinear, own_range
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from plugins.hunyuanvideo_transformer.model import HunyuanVideoTransformer3D


def _put(parent: nn.Cell, key: str | int, new: nn.Cell, copy: bool) -> None:
    """Replace ``parent``'s child ``key`` by ``new``; with ``copy``, ``new`` takes its slices of the
    child's values (a network built with values rather than for a checkpoint)."""
    if copy:
        old = parent[key] if isinstance(key, int) else getattr(parent, key)
        for name, param in new.parameters_and_names():
            values = getattr(old, name).float().asnumpy()
            shard = new.shards.get(name)
            store(param, Stored(np.ascontiguousarray(shard.take(values) if shard else values), "F32"))
    if isinstance(key, int):
        parent[key] = new
    else:
        setattr(parent, key, new)


def split_network(network: HunyuanVideoTransformer3D, config: HunyuanVideoTransformerConfig, group: Group,
                  copy: bool) -> None:
    """Replace ``network``'s block layers by this rank's slices (in place); ``copy``: from the
    network's own values, else left for the checkpoint (see ``load_shards``)."""
    check_divides(config, group.size)
    dim, mlp = config.inner_dim, int(config.inner_dim * config.mlp_ratio)
    heads = config.num_attention_heads // group.size
    own_dim, own_mlp = own_range(dim, group), own_range(mlp, group)
    network.heads = heads  # the rotary tables are tiled to the heads a rank holds

    def heads_of(attention: nn.Cell, names: tuple[str, ...]) -> None:
        for name in names:
            _put(attention, name, ColumnLinear(dim, dim, group), copy)
        attention.heads = heads

    for block in network.transformer_blocks:
        for norm in (block.norm1, block.norm1_context):
            _put(norm, "linear", ColumnLinear(dim, norm.parts * dim, group, gather=True), copy)
        heads_of(block.attn, ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"))
        _put(block.attn.to_out, 0, RowLinear(dim, dim, group, (own_dim,)), copy)
        _put(block.attn, "to_add_out", RowLinear(dim, dim, group, (own_dim,)), copy)
        for ff in (block.ff, block.ff_context):
            _put(ff.net[0], "proj", ColumnLinear(dim, mlp, group, activation=ff.net[0].proj.activation), copy)
            _put(ff.net, 2, RowLinear(mlp, dim, group, (own_mlp,)), copy)
    for block in network.single_transformer_blocks:
        _put(block.norm, "linear", ColumnLinear(dim, block.norm.parts * dim, group, gather=True), copy)
        heads_of(block.attn, ("to_q", "to_k", "to_v"))
        _put(block, "proj_mlp", ColumnLinear(dim, mlp, group, activation=block.proj_mlp.activation), copy)
        _put(block, "proj_out", RowLinear(dim + mlp, dim, group, (own_dim, own_range(mlp, group, dim))), copy)


def shards_of(network: nn.Cell) -> dict:
    """Parameter name -> its ``Shard``, for the split layers' parameters."""
    shards = {}
    for prefix, cell in network.cells_and_names():
        for name, shard in getattr(cell, "shards", {}).items():
            shards[f"{prefix}.{name}"] = shard
    return shards
