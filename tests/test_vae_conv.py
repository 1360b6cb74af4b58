"""The VAE's convolutions as matrix products, against diffusers' ``HunyuanVideoCausalConv3d``.

Shapes are drawn by hypothesis: channels, kernel sizes (1 or 3 per axis), strides (1 or
2 per axis), frames, height, width and batch. Diffusers pads width by ``kernel[0] // 2``
and frames by ``kernel[2] - 1`` (its padding tuple pairs time's kernel size with width),
so the two agree, and a non-cubic kernel is a causal convolution, only where the
kernels along frames and width are equal; those are the kernels drawn.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
    HunyuanVideoCausalConv3d,
    HunyuanVideoUpsampleCausal3D,
)
from hypothesis import given
from hypothesis import strategies as st

from plugins.hunyuanvideo_vae.conv import CausalConv3d, Conv3d, UpsampleCausal3D
from plugins.hunyuanvideo_vae.matmul_conv import Geometry, conv3d, slabs, upsampled_conv3d

TOLERANCE = 1e-5
SLAB_ROUNDING = 1e-6  # a few float32 ulps of the output's scale
KERNELS = st.sampled_from([1, 3])
STRIDES = st.sampled_from([1, 2])


@st.composite
def convolutions(draw) -> dict:
    """A causal convolution and an input at least as large as its kernel."""
    time_and_width, height = draw(KERNELS), draw(KERNELS)
    return {
        "in_channels": draw(st.integers(1, 12)),
        "out_channels": draw(st.integers(1, 12)),
        "kernel": (time_and_width, height, time_and_width),
        "stride": (draw(STRIDES), draw(STRIDES), draw(STRIDES)),
        "batch": draw(st.integers(1, 2)),
        "frames": draw(st.integers(1, 7)),
        "height": draw(st.integers(1, 9)),
        "width": draw(st.integers(1, 9)),
        "seed": draw(st.integers(0, 2**16)),
    }


def reference(case: dict) -> HunyuanVideoCausalConv3d:
    torch.manual_seed(case["seed"])
    return HunyuanVideoCausalConv3d(case["in_channels"], case["out_channels"], case["kernel"],
                                    case["stride"]).eval()


def video(case: dict) -> np.ndarray:
    shape = (case["batch"], case["in_channels"], case["frames"], case["height"], case["width"])
    return np.random.default_rng(case["seed"]).standard_normal(shape).astype(np.float32)


def ours_from(model: HunyuanVideoCausalConv3d, ours: CausalConv3d) -> CausalConv3d:
    """``ours`` with ``model``'s weights (``model.conv`` is diffusers' ``nn.Conv3d``)."""
    ours.conv.weight.set_data(ms.Tensor(model.conv.weight.detach().numpy().copy()))
    ours.conv.bias.set_data(ms.Tensor(model.conv.bias.detach().numpy().copy()))
    return ours


def assert_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    scale = max(float(np.abs(theirs).max()), 1e-6)
    assert float(np.abs(ours - theirs).max()) <= TOLERANCE * scale


@given(convolutions())
def test_causal_conv_matches_diffusers(case):
    model = reference(case)
    x = video(case)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    ours = CausalConv3d(case["in_channels"], case["out_channels"], case["kernel"], case["stride"])
    assert_close(ours_from(model, ours)(ms.Tensor(x)).asnumpy(), expected)


@st.composite
def upsamplings(draw) -> dict:
    """An upsampling layer (factor 1 or 2 per axis, the same in height and width as the VAE's)
    and its input."""
    spatial = draw(st.sampled_from([1, 2]))
    return {
        "channels": draw(st.integers(1, 12)),
        "factor": (draw(st.sampled_from([1, 2])), spatial, spatial),
        "batch": draw(st.integers(1, 2)),
        "frames": draw(st.integers(1, 4)),
        "height": draw(st.integers(1, 6)),
        "width": draw(st.integers(1, 6)),
        "seed": draw(st.integers(0, 2**16)),
    }


@given(upsamplings(), st.sampled_from([1, 4096, 2**40]))
def test_upsampling_conv_matches_diffusers(case, budget):
    """Nearest upsampling folded into the convolution (four 2x2 phases, frames never repeated)
    equals diffusers' upsampling then 3x3x3 convolution, with any slab budget."""
    torch.manual_seed(case["seed"])
    model = HunyuanVideoUpsampleCausal3D(case["channels"], upsample_factor=case["factor"]).eval()
    shape = (case["batch"], case["channels"], case["frames"], case["height"], case["width"])
    x = np.random.default_rng(case["seed"]).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    ours = UpsampleCausal3D(case["channels"], case["factor"])
    ours_from(model.conv, ours.conv)
    ours.conv.conv.slab_bytes = budget
    assert_close(ours(ms.Tensor(x)).asnumpy(), expected)
    weight, bias = model.conv.conv.weight.detach().numpy(), model.conv.conv.bias.detach().numpy()
    assert_close(upsampled_conv3d(x, weight, bias, case["factor"], budget), expected)


@given(convolutions(), st.integers(1, 4096))
def test_slabs_give_the_same_result(case, budget):
    """Any slab budget, down to one row of one frame at a time, gives the same numbers: each
    output is the same sum of the same products. Only to rounding: MindSpore's ``MatMul``
    takes another kernel path for a product of fewer than a few dozen rows, which rounds
    differently in the last bits."""
    model = reference(case)
    geometry = Geometry.causal(case["kernel"], case["stride"])
    weight, bias = model.conv.weight.detach().numpy(), model.conv.bias.detach().numpy()
    x = video(case)
    whole = conv3d(x, weight, bias, geometry, budget=2**40)
    slabbed = conv3d(x, weight, bias, geometry, budget=budget)
    assert float(np.abs(slabbed - whole).max()) <= SLAB_ROUNDING * max(float(np.abs(whole).max()), 1e-6)


@given(convolutions(), st.integers(1, 4096))
def test_slabs_cover_the_output_once(case, budget):
    geometry = Geometry.causal(case["kernel"], case["stride"])
    size = geometry.output_size(case["frames"], case["height"], case["width"])
    covered = np.zeros(size[:2], int)
    for slab in slabs(geometry, size, case["in_channels"], case["out_channels"], budget):
        covered[slab.frames, slab.rows] += 1
    assert (covered == 1).all()


def test_slab_budget_bounds_columns_and_products():
    """At the real width, slabs span every frame in bands of rows; when one row of every frame
    exceeds the budget, groups of frames one row at a time. No slab exceeds the budget."""
    geometry = Geometry.causal((3, 3, 3))
    per_position = 4 * (9 * 128 + 3 * 128)

    def plan(size: tuple[int, int, int], budget: int) -> list:
        planned = list(slabs(geometry, size, 128, 128, budget))
        for slab in planned:
            read = geometry.source_frame(slab.frames.stop - 1, 2) - geometry.source_frame(slab.frames.start, 0) + 1
            assert read * (slab.rows.stop - slab.rows.start) * size[2] * per_position <= budget
        return planned

    assert [(s.frames, s.rows) for s in plan((17, 8, 8), 4 * 2**20)] == [
        (slice(0, 17), slice(0, 5)), (slice(0, 17), slice(5, 8))]
    assert {(s.frames.start, s.frames.stop) for s in plan((17, 64, 64), 64 * 2**20)} == {(0, 17)}
    assert {(s.frames.start, s.frames.stop) for s in plan((17, 64, 64), 4 * 2**20)} == {(0, 8), (8, 16), (16, 17)}


def test_parameters_have_the_checkpoint_names_and_shapes():
    conv = CausalConv3d(4, 6, 3, (2, 2, 2))
    assert {name: tuple(p.shape) for name, p in conv.parameters_and_names()} == {
        "conv.weight": (6, 4, 3, 3, 3), "conv.bias": (6,)}
    quant = Conv3d(8, 8, 1)
    assert {name: tuple(p.shape) for name, p in quant.parameters_and_names()} == {
        "weight": (8, 8, 1, 1, 1), "bias": (8,)}


def test_random_initialisation_has_pytorch_default_spread():
    conv = Conv3d(16, 32, 3)
    bound = 1 / np.sqrt(16 * 27)
    weight, bias = conv.weight.asnumpy(), conv.bias.asnumpy()
    assert 0.5 * bound < np.abs(weight).max() <= bound
    assert np.abs(bias).max() <= bound and bias.std() > 0


def test_input_smaller_than_the_kernel_is_refused():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        Geometry((3, 3, 3)).output_size(2, 5, 5)


def test_weights_held_in_bf16_are_widened_for_the_products():
    """A convolution whose parameters are stored as bf16 computes with their float32 values."""
    from plugins.common.precision import Stored, narrow, store, to_float32

    conv = CausalConv3d(6, 5, 3)
    x = np.random.default_rng(0).standard_normal((1, 6, 3, 5, 4)).astype(np.float32)
    stored = {name: narrow(param.asnumpy(), "BF16") for name, param in conv.parameters_and_names()}
    widened = {name: to_float32(bits, "BF16") for name, bits in stored.items()}
    expected = conv3d(x, widened["conv.weight"], widened["conv.bias"], conv.conv.geometry)
    for name, param in conv.parameters_and_names():
        store(param, Stored(stored[name], "BF16"))
    assert conv.conv.weight.dtype == ms.bfloat16
    np.testing.assert_array_equal(conv(ms.Tensor(x)).asnumpy(), expected)
