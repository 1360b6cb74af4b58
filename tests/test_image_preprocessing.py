"""The conditioning image on its way to the backbone, against diffusers: resized and normalised
as ``VideoProcessor.preprocess`` does, and encoded to the scaled latents its I2V pipeline takes."""

from __future__ import annotations

import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKLHunyuanVideo
from diffusers.video_processor import VideoProcessor
from hypothesis import given
from hypothesis import strategies as st

import zoo
from tests.text_fixtures import randomized
from zoo import images, tiny

sizes = st.integers(1, 6).map(lambda n: 16 * n)


@st.composite
def pictures(draw: st.DrawFn) -> np.ndarray:
    height, width = draw(st.integers(4, 90)), draw(st.integers(4, 90))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@given(pictures(), sizes, sizes)
def test_resized_and_normalised_as_diffusers(picture, height, width):
    expected = VideoProcessor(vae_scale_factor=8).preprocess(PIL.Image.fromarray(picture), height, width).numpy()
    ours = images.to_video(picture[None], height, width)
    assert ours.shape == (1, 3, 1, height, width) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours[:, :, 0], expected)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """The tiny SkyReels pipeline with diffusers' VAE (random weights) in place of its own."""
    vae = randomized(AutoencoderKLHunyuanVideo(**tiny.VAE, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                               up_block_types=("HunyuanVideoUpBlock3D",) * 4), 5)
    folder = tmp_path_factory.mktemp("pipeline") / "tiny"
    tiny.write_tiny_pipeline(folder, {"in_channels": 32}, "HunyuanSkyreelsImageToVideoPipeline")
    shutil.rmtree(folder / "vae")
    vae.save_pretrained(folder / "vae")
    return folder, vae


@given(pictures(), sizes, sizes, st.integers(1, 2))
def test_the_image_latents_are_diffusers_scaled_posterior_mode(tiny_folder, picture, height, width, copies):
    folder, vae = tiny_folder
    pipe = zoo.from_pretrained(folder)
    condition = pipe.image_condition(picture[None], copies, height, width)
    pixels = VideoProcessor(vae_scale_factor=8).preprocess(PIL.Image.fromarray(picture), height, width)
    with torch.no_grad():
        expected = (vae.encode(pixels.unsqueeze(2)).latent_dist.mode() * vae.config.scaling_factor).numpy()
    assert condition.latents.shape == (copies, 16, 1, height // 8, width // 8)
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(condition.latents - expected).max()) <= 1e-4 * scale
