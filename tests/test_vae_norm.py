"""The VAE's group norm (with and without SiLU) against PyTorch's, on shapes hypothesis draws."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from plugins.hunyuanvideo_vae.norm import GroupNorm


@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 2), st.integers(1, 3), st.integers(2, 6),
       st.booleans(), st.floats(-3, 3), st.integers(0, 2**16))
def test_group_norm_matches_pytorch(groups, per_group, batch, frames, size, silu, offset, seed):
    """Values with an offset far from zero, which a one-pass variance would lose to rounding."""
    channels = groups * per_group
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((batch, channels, frames, size, size)) + 10 * offset).astype(np.float32)
    weight = rng.standard_normal(channels).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    expected = torch.nn.functional.group_norm(torch.from_numpy(x), groups, torch.from_numpy(weight),
                                              torch.from_numpy(bias), 1e-6)
    if silu:
        expected = torch.nn.functional.silu(expected)
    norm = GroupNorm(groups, channels, eps=1e-6, silu=silu)
    norm.weight.set_data(ms.Tensor(weight))
    norm.bias.set_data(ms.Tensor(bias))
    np.testing.assert_allclose(norm(ms.Tensor(x)).asnumpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_parameters_have_the_checkpoint_names():
    assert {name: tuple(p.shape) for name, p in GroupNorm(4, 8).parameters_and_names()} == {
        "weight": (8,), "bias": (8,)}
