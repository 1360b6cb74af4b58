"""Each rank reads only its slices of the checkpoint.

The checkpoint is checked against the whole model's names and shapes (so a checkpoint that does not
fit fails as it does for the transformer), through the same key maps (diffusers folders, original
and fp8 single files). Each tensor is then taken from the memory-mapped file: a rank copies its
slice into memory at the stored precision (or ``weight_dtype``) and drops the file's pages, so its
memory holds about ``1 / size`` of the split layers. Rows of a split layer are contiguous in the
file; a column slice touches every row's pages once, which the page cache serves to every rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mindspore import nn

from plugins.common.checkpoint import check_shapes
from plugins.common.precision import Stored, store
from plugins.common.streaming import MappedCheckpoint
from plugins.common.weights import Source, _assemble, _narrowed
from plugins.hunyuanvideo_parallel.split import shards_of


def load_shards(network: nn.Cell, folder: str | Path, what: str, weight_dtype: str) -> int:
    """Fill ``network``'s parameters (split layers: their slices) from ``folder``; the bytes held."""
    params = dict(network.parameters_and_names())
    shards = shards_of(network)
    expected = {name: shards[name].full if name in shards else tuple(param.shape) for name, param in params.items()}
    source = Source(folder, expected, what)
    check_shapes(source.checkpoint.folder, source.shapes, expected, what)
    mapped = MappedCheckpoint(source.checkpoint)
    held = 0
    for name in source.in_storage_order():
        pieces = source.key_map.pieces[name]
        array = _assemble(pieces, mapped.array)
        if name in shards:
            array = shards[name].take(array)
        stored = _narrowed(Stored(np.array(array), source.dtype(name), scale=source.scale(name)), weight_dtype)
        store(params[name], stored)
        held += stored.array.nbytes
        for piece in pieces:
            mapped.drop(piece.key)
    return held
