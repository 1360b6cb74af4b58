"""Live parity of the HunyuanVideo VAE with diffusers' ``AutoencoderKLHunyuanVideo``.

Each example draws a tiny architecture, builds the reference with every parameter
random, saves it with ``save_pretrained`` (one file or shards) and loads ours from
that folder; encode (posterior mean) and decode must agree within 1e-4 of the
output's scale, plain, framewise, sliced and tiled.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLHunyuanVideo
from hypothesis import assume, given
from hypothesis import strategies as st

import zoo
from plugins.common.checkpoint import CheckpointError
from plugins.hunyuanvideo_vae.model import HunyuanVideoVAE

TOLERANCE = 1e-4
MULTIPLES_OF_8 = st.sampled_from([8, 16, 24])


@st.composite
def architectures(draw) -> dict:
    """Group norms keep at least 4 channels a group: over a 1x1 latent tile, fewer make the
    norm (in diffusers as in ours) divide by the spread of one or two numbers, which
    torch refuses or which turns rounding into differences of 1e-4 of scale."""
    blocks = draw(st.integers(3, 4))
    groups = draw(st.sampled_from([2, 4]))
    return {
        "block_out_channels": tuple(groups * width for width in draw(
            st.lists(st.sampled_from([4, 8, 12]), min_size=blocks, max_size=blocks))),
        "down_block_types": ("HunyuanVideoDownBlock3D",) * blocks,
        "up_block_types": ("HunyuanVideoUpBlock3D",) * blocks,
        "layers_per_block": draw(st.integers(1, 2)),
        "norm_num_groups": groups,
        "latent_channels": draw(st.sampled_from([4, 16])),
        "mid_block_add_attention": draw(st.booleans()),
    }


def reference(architecture: dict, seed: int) -> AutoencoderKLHunyuanVideo:
    torch.manual_seed(seed)
    model = AutoencoderKLHunyuanVideo(**architecture).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.05 + 0.15 * torch.rand(()).item())
    return model


def ours_from(model: AutoencoderKLHunyuanVideo, folder: Path, sharded: bool) -> HunyuanVideoVAE:
    model.save_pretrained(folder, max_shard_size="40KB" if sharded else "10GB")
    assert any(folder.glob("*.safetensors.index.json")) == sharded
    return zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=folder)


def video(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def assert_close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape}, reference {theirs.shape}"
    scale = float(np.abs(theirs).max())
    error = float(np.abs(ours - theirs).max())
    assert error <= TOLERANCE * scale, f"{what}: max abs difference {error:.3g} at scale {scale:.3g}"


def both(model: AutoencoderKLHunyuanVideo, ours, x: np.ndarray, what: str) -> None:
    """Encode ``x`` with both, then decode the reference's latents with both."""
    with torch.no_grad():
        latents = model.encode(torch.from_numpy(x)).latent_dist.mean
        decoded = model.decode(latents).sample.numpy()
    assert_close(ours.encode(x), latents.numpy(), f"{what} encode")
    assert_close(ours.decode(latents.numpy()), decoded, f"{what} decode")


@given(architectures(), st.sampled_from([1, 5, 9, 17]), MULTIPLES_OF_8, MULTIPLES_OF_8, st.integers(1, 2),
       st.booleans(), st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_matches_diffusers(architecture, frames, height, width, batch, framewise, sliced, sharded, seed):
    model = reference(architecture, seed)
    with tempfile.TemporaryDirectory() as folder:
        ours = ours_from(model, Path(folder), sharded)
    model.use_framewise_encoding = model.use_framewise_decoding = framewise
    ours.use_framewise_encoding = ours.use_framewise_decoding = framewise
    if sliced:
        model.enable_slicing()
        ours.enable_slicing()
    both(model, ours, video(seed, (batch, 3, frames, height, width)), "plain")


@st.composite
def tilings(draw) -> tuple[dict, tuple[int, int, int]]:
    """Tile sizes and a video (frames, height, width) they cut into a few tiles: in space,
    seams blended or not, and in some examples also in time."""
    tiles, extents = {}, []
    for axis in ("height", "width"):  # (tile, stride, extent): 2 blended tiles, 2 apart, 3 blended, 1
        size, stride, extent = draw(st.sampled_from([(16, 8, 16), (8, 8, 16), (16, 8, 24), (16, 16, 8)]))
        tiles[f"tile_sample_min_{axis}"], tiles[f"tile_sample_stride_{axis}"] = size, stride
        extents.append(extent)
    if draw(st.booleans()):
        size, stride, frames = draw(st.sampled_from([(8, 4, 9), (4, 4, 5), (16, 12, 17)]))
        tiles["tile_sample_min_num_frames"], tiles["tile_sample_stride_num_frames"] = size, stride
    else:  # diffusers' frame tiles (16 frames every 12) stay, on videos too short for them
        frames = draw(st.sampled_from([1, 5]))
    return tiles, (frames, *extents)


def forward_passes(tiles: dict, frames: int, height: int, width: int) -> int:
    """How many tiles encoding and decoding cut this video into (to keep examples cheap)."""
    spatial = 1
    if height > tiles["tile_sample_min_height"] or width > tiles["tile_sample_min_width"]:
        spatial = -(-height // tiles["tile_sample_stride_height"]) * -(-width // tiles["tile_sample_stride_width"])
    size = tiles.get("tile_sample_min_num_frames", 16)
    stride = tiles.get("tile_sample_stride_num_frames", 12)
    latent_frames = (frames - 1) // 4 + 1
    encode = -(-frames // stride) if frames > size else 1
    decode = -(-latent_frames // (stride // 4)) if latent_frames > size // 4 else 1
    return spatial * (encode + decode)


@given(architectures(), tilings(), st.integers(0, 2**16))
def test_tiled_matches_diffusers(architecture, tiling, seed):
    tiles, (frames, height, width) = tiling
    assume(forward_passes(tiles, frames, height, width) <= 8)
    model = reference(architecture, seed)
    with tempfile.TemporaryDirectory() as folder:
        ours = ours_from(model, Path(folder), sharded=False)
    model.enable_tiling(**tiles)
    ours.enable_tiling(**tiles)
    both(model, ours, video(seed, (1, 3, frames, height, width)), f"tiled {tiles}")


def test_tiling_in_time_and_space_together(tmp_path):
    """A fixed case with seams blended in time and space at once."""
    architecture = {"block_out_channels": (8, 16, 16), "down_block_types": ("HunyuanVideoDownBlock3D",) * 3,
                    "up_block_types": ("HunyuanVideoUpBlock3D",) * 3, "layers_per_block": 1,
                    "norm_num_groups": 4}
    model = reference(architecture, seed=7)
    ours = ours_from(model, tmp_path, sharded=True)
    tiles = {"tile_sample_min_height": 16, "tile_sample_stride_height": 8,
             "tile_sample_min_width": 8, "tile_sample_stride_width": 8}
    model.enable_tiling(**tiles)
    ours.enable_tiling(**tiles)
    both(model, ours, video(7, (1, 3, 17, 16, 16)), "tiled in time and space")


def test_checkpoint_must_fit_the_config(tmp_path):
    model = reference({"block_out_channels": (8, 16, 16), "down_block_types": ("HunyuanVideoDownBlock3D",) * 3,
                       "up_block_types": ("HunyuanVideoUpBlock3D",) * 3, "layers_per_block": 1,
                       "norm_num_groups": 4}, seed=0)
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="mis-shaped"):
        zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=tmp_path, latent_channels=8)
    with pytest.raises(CheckpointError, match="missing"):
        zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=tmp_path, layers_per_block=2)


def test_config_json_loads_as_data(tmp_path):
    """A diffusers config.json (every key of it) is read into our config unchanged."""
    model = reference({"block_out_channels": (8, 8, 16, 16), "layers_per_block": 1, "norm_num_groups": 2,
                       "latent_channels": 4, "mid_block_add_attention": False}, seed=1)
    model.save_pretrained(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no key of the saved config.json is left unread
        config = zoo.load_component("autoencoder", "hunyuanvideo-vae", weights=tmp_path).config
    for key, value in model.config.items():
        if not key.startswith("_"):
            assert getattr(config, key) == (tuple(value) if isinstance(value, list | tuple) else value), key
