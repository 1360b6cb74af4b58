"""The autoencoder contract on the HunyuanVideo VAE, and how it treats bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo
from contracts import Autoencoder, ContractError
from plugins.common.weights import save_weights
from registry import ComponentOptionsError
from zoo.testkit import properties

TINY = {
    "block_out_channels": (8, 16, 16),
    "down_block_types": ("HunyuanVideoDownBlock3D",) * 3,
    "up_block_types": ("HunyuanVideoUpBlock3D",) * 3,
    "layers_per_block": 1,
    "norm_num_groups": 4,
}


def make():
    return zoo.load_component("autoencoder", "hunyuanvideo-vae", **TINY)


@pytest.fixture(scope="module")
def vae():
    return make()


@pytest.mark.parametrize("prop", properties("autoencoder"), ids=lambda prop: prop.id)
def test_contract_property(prop):
    prop.check(make)


def test_declares_hunyuanvideo_layout(vae):
    config = vae.config
    assert isinstance(vae, Autoencoder)
    assert (config.latent_channels, config.spatial_compression, config.temporal_compression) == (16, 8, 4)
    assert config.scaling_factor == pytest.approx(0.476986)
    assert config.causal is True


def test_listed_without_building():
    names = [info.name for info in zoo.list_components("autoencoder")]
    assert "hunyuanvideo-vae" in names
    probe = "import sys, plugins.hunyuanvideo_vae; print('mindspore' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", "registering the VAE imports MindSpore"


def test_random_init_gives_moderate_values(vae):
    video = np.random.default_rng(0).uniform(-1, 1, (1, 3, 5, 16, 16)).astype(np.float32)
    latents = vae.encode(video)
    decoded = vae.decode(latents)
    for name, out in (("latents", latents), ("video", decoded)):
        assert np.isfinite(out).all(), name
        assert 1e-3 < float(out.std()) < 1e2, f"{name} std {out.std()}"


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 3, 4, 16, 16), r"4k\+1 frames"),
    ((1, 3, 6, 16, 16), r"4k\+1 frames"),
    ((1, 3, 0, 16, 16), r"4k\+1 frames"),
    ((1, 3, 5, 12, 16), "multiples of 8"),
    ((1, 3, 5, 16, 20), "multiples of 8"),
    ((1, 3, 5, 0, 16), "multiples of 8"),
    ((1, 4, 5, 16, 16), "3 colour channels"),
    ((1, 1, 5, 16, 16), "3 colour channels"),
    ((3, 5, 16, 16), "5 dims"),
    ((0, 3, 5, 16, 16), "at least one video"),
])
def test_encode_refuses_bad_video(vae, shape, message):
    with pytest.raises(ContractError, match=message):
        vae.encode(np.zeros(shape, np.float32))


@pytest.mark.parametrize(("shape", "message"), [
    ((1, 4, 2, 2, 2), "16 channels"),
    ((1, 16, 2, 2), "5 dims"),
    ((1, 16, 0, 2, 2), "no empty dimension"),
    ((0, 16, 1, 2, 2), "no empty dimension"),
])
def test_decode_refuses_bad_latents(vae, shape, message):
    with pytest.raises(ContractError, match=message):
        vae.decode(np.zeros(shape, np.float32))


def test_encode_refuses_non_numbers(vae):
    with pytest.raises(ContractError, match="expected numbers"):
        vae.encode(np.full((1, 3, 1, 8, 8), "x"))


@pytest.mark.parametrize(("options", "message"), [
    ({"tile_sample_min_height": 12}, "tile_sample_min_height: expected a positive multiple of 8"),
    ({"tile_sample_stride_width": 0}, "tile_sample_stride_width: expected a positive multiple of 8"),
    ({"tile_sample_min_num_frames": 6}, "tile_sample_min_num_frames: expected a positive multiple of 4"),
    ({"tile_sample_min_height": 64, "tile_sample_stride_height": 128}, "would leave gaps"),
])
def test_enable_tiling_refuses_bad_sizes(options, message):
    vae = make()
    with pytest.raises(ValueError, match=message):
        vae.enable_tiling(**options)
    assert vae.use_tiling is False


@pytest.mark.parametrize(("options", "message"), [
    ({"block_out_channels": (8, 16), "down_block_types": ("HunyuanVideoDownBlock3D",) * 2,
      "up_block_types": ("HunyuanVideoUpBlock3D",) * 2}, "cannot give 8x spatial"),
    ({"norm_num_groups": 3}, "multiple of norm_num_groups"),
    ({"down_block_types": ("HunyuanVideoDownBlock3D",) * 4}, "one entry per block"),
    ({"temporal_compression_ratio": 8}, "temporal_compression_ratio"),
    ({"in_channels": 4}, "in_channels"),
    ({"tile_size": 8}, "tile_size"),
    ({"tiling": {"tile_height": 64}}, "unknown tiling argument"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ComponentOptionsError, match=message):
        zoo.load_component("autoencoder", "hunyuanvideo-vae", **{**TINY, **options})


def test_disabling_tiling_and_slicing_restores_the_plain_result():
    vae = make()
    video = np.random.default_rng(1).uniform(-1, 1, (2, 3, 5, 16, 16)).astype(np.float32)
    plain = vae.encode(video)
    vae.enable_tiling(tile_sample_min_height=8, tile_sample_min_width=8, tile_sample_stride_height=8,
                      tile_sample_stride_width=8)
    vae.enable_slicing()
    assert vae.encode(video).shape == plain.shape
    vae.disable_tiling()
    vae.disable_slicing()
    assert (vae.use_tiling, vae.use_slicing) == (False, False)
    np.testing.assert_array_equal(vae.encode(video), plain)


def test_tiling_and_slicing_as_options_switch_them_on_at_build(tmp_path):
    save_weights(make().model, tmp_path)  # both builds below get the same weights
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    tiles = {"tile_sample_min_height": 8, "tile_sample_min_width": 8, "tile_sample_stride_height": 8,
             "tile_sample_stride_width": 8}
    vae = zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=tmp_path, tiling=tiles, slicing=True)
    assert (vae.use_tiling, vae.use_slicing) == (True, True)
    by_hand = zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=tmp_path)
    video = np.random.default_rng(2).uniform(-1, 1, (2, 3, 5, 16, 16)).astype(np.float32)
    untiled = by_hand.encode(video)
    by_hand.enable_tiling(**tiles)
    np.testing.assert_allclose(vae.encode(video), by_hand.encode(video), atol=1e-6)  # sliced: per item
    assert np.abs(untiled - by_hand.encode(video)).max() > 1e-3  # the tiles are small enough to matter
