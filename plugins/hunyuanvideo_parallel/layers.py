"""Linear layers that hold one rank's slice of a checkpoint's weight, under the checkpoint's names.

Megatron's split: a *column* layer holds a contiguous run of the output features (rows of
``weight [out, in]``) and of the bias, and its output is that slice (or, with ``gather``, every
rank's slices side by side, which is the full output); a *row* layer holds the input features
that match the previous column layers' outputs (columns of ``weight``) and returns the sum of every
rank's partial product (an ``AllReduce``), the bias added once (rank 0 holds it, the others zeros
under the same name). Between a column and a row layer nothing needs the whole width, so each
attention or MLP costs one ``AllReduce``. Both compute as the transformer's ``Linear`` does (its
fused activation, its bf16 path), on their slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mindspore import Tensor

from plugins.common.layers import Linear
from plugins.hunyuanvideo_parallel.comm import Group


@dataclass(frozen=True)
class Shard:
    """Which part of a stored tensor of shape ``full`` a rank holds: the index ``ranges`` along ``axis``,
    concatenated; or, with ``zero``, zeros of the tensor's shape."""

    full: tuple[int, ...]
    axis: int
    ranges: tuple[tuple[int, int], ...]
    zero: bool = False

    def take(self, array: np.ndarray) -> np.ndarray:
        if self.zero:
            return np.zeros_like(array)
        index = [slice(None)] * array.ndim
        parts = []
        for start, stop in self.ranges:
            index[self.axis] = slice(start, stop)
            parts.append(array[tuple(index)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts, self.axis)


def own_range(size: int, group: Group, offset: int = 0) -> tuple[int, int]:
    """This rank's contiguous share of ``size`` features starting at ``offset``."""
    share = size // group.size
    return offset + group.rank * share, offset + (group.rank + 1) * share


class ColumnLinear(Linear):
    """``in_features -> out_features / size`` features of this rank; with ``gather``, the full
    ``out_features`` output, assembled from every rank's slice."""

    def __init__(self, in_features: int, out_features: int, group: Group, gather: bool = False,
                 activation: str | None = None) -> None:
        super().__init__(in_features, out_features // group.size, activation=activation)
        self.group, self.gather = group, gather
        rows = (own_range(out_features, group),)
        self.shards = {"weight": Shard((out_features, in_features), 0, rows),
                       "bias": Shard((out_features,), 0, rows)}

    def construct(self, x: Tensor) -> Tensor:
        out = super().construct(x)
        return self.group.gather_last(out) if self.gather else out


class RowLinear(Linear):
    """This rank's input features (the ``ranges`` of ``in_features``) -> the full ``out_features``,
    summed over the group."""

    def __init__(self, in_features: int, out_features: int, group: Group,
                 ranges: tuple[tuple[int, int], ...]) -> None:
        super().__init__(sum(stop - start for start, stop in ranges), out_features)
        self.group = group
        self.shards = {"weight": Shard((out_features, in_features), 1, ranges),
                       "bias": Shard((out_features,), 0, ((0, out_features),), zero=group.rank != 0)}

    def construct(self, x: Tensor) -> Tensor:
        return self.group.all_reduce(super().construct(x))
