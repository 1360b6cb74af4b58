"""Image to video end to end: parity with diffusers' ``HunyuanSkyreelsImageToVideoPipeline`` and
``HunyuanVideoImageToVideoPipeline`` (both condition types), given the same initial latents,
with true CFG; folders recognised from ``model_index.json``; assemblies that cannot work refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanSkyreelsImageToVideoPipeline,
    HunyuanVideoImageToVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from diffusers.pipelines.hunyuan_video import pipeline_hunyuan_skyreels_image2video as skyreels_module
from transformers import CLIPTextModel, LlamaModel

import zoo
from tests import llava_fixtures as fx
from tests.test_pipeline import zoo_cli
from tests.text_fixtures import randomized
from zoo import images as zoo_images
from zoo import tiny

PROMPT = "a red cat walks slowly on the grass"
SIZE = dict(height=32, width=32, num_frames=5, num_inference_steps=3)
CASES = {
    "embedded-guidance": dict(guidance_scale=4.0),
    "true-cfg": dict(negative_prompt="blurry, dark", true_cfg_scale=3.0, guidance_scale=1.0),
}


def tiny_vae(seed: int) -> AutoencoderKLHunyuanVideo:
    return randomized(AutoencoderKLHunyuanVideo(**tiny.VAE, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                                up_block_types=("HunyuanVideoUpBlock3D",) * 4), seed)


def sample_image(seed: int = 0, size: tuple[int, int] = (40, 48)) -> np.ndarray:
    """A smooth colour image (so that resizing keeps it recognisable), 8-bit RGB."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    return np.asarray(PIL.Image.fromarray(coarse).resize(size[::-1], PIL.Image.Resampling.BILINEAR))


def initial_latents(seed: int = 0, num_frames: int = SIZE["num_frames"]) -> np.ndarray:
    shape = (1, 16, (num_frames - 1) // 4 + 1, SIZE["height"] // 8, SIZE["width"] // 8)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def frames_of(video) -> np.ndarray:
    return np.round(np.asarray(video) * 255).astype(np.int16)


@pytest.fixture(scope="module")
def skyreels_folder(tmp_path_factory):
    """A tiny SkyReels-V1 pipeline with random weights, saved by diffusers."""
    tokenizer, tokenizer_2 = tiny.llama_tokenizer(), tiny.clip_tokenizer()
    transformer = randomized(HunyuanVideoTransformer3DModel(**{**tiny.TRANSFORMER, "in_channels": 32}), 1)
    pipe = HunyuanSkyreelsImageToVideoPipeline(
        text_encoder=randomized(LlamaModel(tiny.llama_config(tokenizer)), 2), tokenizer=tokenizer,
        transformer=transformer, vae=tiny_vae(3), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=randomized(CLIPTextModel(tiny.clip_config(tokenizer_2)), 4), tokenizer_2=tokenizer_2)
    folder = tmp_path_factory.mktemp("skyreels") / "pipeline"
    pipe.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_skyreels_frames_equal_diffusers_given_the_same_latents(skyreels_folder, monkeypatch, case):
    options = CASES[case]
    image, latents = sample_image(), initial_latents()
    pipe = zoo.from_pretrained(skyreels_folder)
    assert pipe.spec.encoder.name == "hunyuanvideo-text"
    assert pipe.config("backbone").image_conditioning == "latent_concat"
    ours = pipe(PROMPT, image=image, latents=latents, progress=False, **SIZE, **options)

    # diffusers' SkyReels pipeline draws the image latents from the VAE's posterior; ours take
    # its mean, as diffusers' I2V pipeline does, so the reference is asked for the mean.
    def posterior_mean(output, generator=None, sample_mode="sample"):
        return output.latent_dist.mode()

    monkeypatch.setattr(skyreels_module, "retrieve_latents", posterior_mean)
    reference = HunyuanSkyreelsImageToVideoPipeline.from_pretrained(skyreels_folder)
    with torch.no_grad():
        expected = frames_of(reference(image=PIL.Image.fromarray(image), prompt=PROMPT,
                                       latents=torch.from_numpy(latents), output_type="np", **SIZE,
                                       **options).frames)
    assert ours.frames.shape == expected.shape == (1, 5, 32, 32, 3)
    assert np.abs(ours.frames.astype(np.int16) - expected).max() <= 1
    assert ours.frames.std() > 0


def test_the_image_changes_the_video(skyreels_folder):
    pipe = zoo.from_pretrained(skyreels_folder)
    first = pipe(PROMPT, image=sample_image(0), seed=1, progress=False, **SIZE)
    other = pipe(PROMPT, image=sample_image(1), seed=1, progress=False, **SIZE)
    assert not np.array_equal(first.frames, other.frames)


def test_an_image_for_a_text_to_video_model_and_none_for_an_image_to_video_one(skyreels_folder):
    with pytest.raises(ValueError, match="needs an image to animate"):
        zoo.from_pretrained(skyreels_folder)(PROMPT, progress=False, **SIZE)
    with pytest.raises(ValueError, match="is text-to-video"):
        zoo.from_pretrained("hunyuanvideo-tiny")(PROMPT, image=sample_image(), progress=False, **SIZE)


def test_a_backbone_and_autoencoder_of_different_latents_are_refused_naming_both(skyreels_folder):
    with pytest.raises(ValueError, match=r"backbone 'hunyuanvideo-transformer' denoises 8-channel latents but "
                                         r"autoencoder 'hunyuanvideo-vae' makes 16-channel"):
        zoo.from_pretrained(skyreels_folder, backbone={"name": "hunyuanvideo-transformer",
                                                       "options": {"in_channels": 16, "out_channels": 8}})


# HunyuanVideo-I2V's latent_concat drops the decoded frames of the first latent frame: 9 frames give 5.
I2V_SIZE = {**SIZE, "num_frames": 9}
LLAVA = fx.llava_config()
I2V_TEMPLATE = fx.template(fx.expected_features(LLAVA))


@pytest.fixture(scope="module", params=["latent_concat", "token_replace"])
def i2v_folder(request, tmp_path_factory):
    """A tiny HunyuanVideo-I2V pipeline (LLaVA and CLIP encoders) with random weights, saved by diffusers."""
    kind = request.param
    tokenizer_2 = tiny.clip_tokenizer()
    transformer = randomized(HunyuanVideoTransformer3DModel(**{
        **tiny.TRANSFORMER, "in_channels": 33 if kind == "latent_concat" else 16, "image_condition_type": kind,
        "text_embed_dim": LLAVA.text_config.hidden_size}), 1)
    pipe = HunyuanVideoImageToVideoPipeline(
        text_encoder=fx.reference_llava(LLAVA, 2), tokenizer=fx.tokenizer(), transformer=transformer,
        vae=tiny_vae(3), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=randomized(CLIPTextModel(tiny.clip_config(tokenizer_2)), 4), tokenizer_2=tokenizer_2,
        image_processor=fx.image_processor(LLAVA.vision_config.image_size))
    folder = tmp_path_factory.mktemp(f"i2v-{kind}") / "pipeline"
    pipe.save_pretrained(folder)
    return kind, folder


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_i2v_frames_equal_diffusers_given_the_same_latents(i2v_folder, case):
    kind, folder = i2v_folder
    options = {**CASES[case], "prompt_template": I2V_TEMPLATE}
    image, latents = sample_image(), initial_latents(num_frames=I2V_SIZE["num_frames"])
    pipe = zoo.from_pretrained(folder)
    assert pipe.spec.encoder.name == "hunyuanvideo-i2v-text"
    assert pipe.config("backbone").image_conditioning == kind
    ours = pipe(PROMPT, image=image, latents=latents, progress=False, **I2V_SIZE, **options)
    reference = HunyuanVideoImageToVideoPipeline.from_pretrained(folder)
    with torch.no_grad():
        expected = frames_of(reference(image=PIL.Image.fromarray(image), prompt=PROMPT,
                                       latents=torch.from_numpy(latents), output_type="np", **I2V_SIZE,
                                       **options).frames)
    frames = 5 if kind == "latent_concat" else 9
    assert ours.frames.shape == expected.shape == (1, frames, 32, 32, 3)
    assert np.abs(ours.frames.astype(np.int16) - expected).max() <= 1
    assert ours.frames.std() > 0


def test_an_i2v_backbone_with_a_prompt_only_encoder_is_refused_naming_both(i2v_folder):
    kind, folder = i2v_folder
    with pytest.raises(ValueError, match=rf"backbone 'hunyuanvideo-transformer' \({kind}, HunyuanVideo-I2V\) needs "
                                         r"an encoder that reads the image .* encoder 'hunyuanvideo-clip' takes"):
        zoo.from_pretrained(folder, encoder="hunyuanvideo-clip")



def png16(path, pixels: np.ndarray) -> None:
    """A PNG of 16 bits per RGB channel, written by hand (PIL writes none)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def image_file(folder, kind: str) -> str:
    """An image file of one kind: good (RGB, palette) or not (alpha, grey, 16-bit, unreadable, missing)."""
    rng = np.random.default_rng(0)
    path = folder / f"{kind}.png"
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    if kind == "rgb":
        PIL.Image.fromarray(rgb).save(path)
    elif kind == "palette":
        PIL.Image.fromarray(rgb).convert("P").save(path)
    elif kind == "alpha":
        PIL.Image.fromarray(np.concatenate([rgb, rgb[..., :1]], -1), "RGBA").save(path)
    elif kind == "grey":
        PIL.Image.fromarray(rgb[..., 0]).save(path)
    elif kind == "grey16":
        PIL.Image.fromarray(rng.integers(0, 65536, (20, 24)).astype(np.uint16)).save(path)
    elif kind == "rgb16":
        png16(path, rng.integers(0, 65536, (20, 24, 3)).astype(np.uint16))
    elif kind == "unreadable":
        path.write_text("not an image")
    return str(path)


@pytest.mark.parametrize(("kind", "message"), [
    ("alpha", "has an alpha channel; an image to animate must be 8-bit RGB"),
    ("grey", "is greyscale; an image to animate must be 8-bit RGB"),
    ("grey16", "is 16-bit greyscale"),
    ("rgb16", "has 16 bits per channel"),
    ("unreadable", "cannot be read as an image"),
    ("missing", "does not exist"),
])
def test_images_that_cannot_be_animated_are_refused_in_one_line(tmp_path, kind, message):
    path = image_file(tmp_path, kind)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        zoo_images.load_image(path)
    out = tmp_path / "out"
    out.mkdir()
    result = zoo_cli("generate", "a cat", "--image", path, "--out", str(out / "v.mp4"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.startswith("zoo: error: ") and result.stderr.count("\n") == 1
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("kind", ["rgb", "palette"])
def test_rgb_and_palette_images_read_as_8_bit_rgb(tmp_path, kind):
    pixels = zoo_images.load_image(image_file(tmp_path, kind))
    assert pixels.shape == (20, 24, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, np.asarray(PIL.Image.open(image_file(tmp_path, kind)).convert("RGB")))


def test_an_image_is_read_upright_as_its_exif_orientation_says(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    PIL.Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    assert np.array_equal(zoo_images.load_image(tmp_path / "turned.png"), np.rot90(pixels, -1))


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "hunyuanvideo-tiny"], "backbone 'hunyuanvideo-transformer' is text-to-video"),
    (["--height", "40"], "height must be a positive multiple of 16, got 40"),
], ids=["image-for-text-to-video", "size"])
def test_generate_refuses_a_misfit_image_request_before_loading(tmp_path, args, message):
    out = tmp_path / "out"
    out.mkdir()
    result = zoo_cli("generate", "a cat", "--image", image_file(tmp_path, "rgb"), *args, "--out", str(out / "v.mp4"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "loading" not in result.stderr
    assert list(out.iterdir()) == []


def test_generate_refuses_an_image_to_video_model_without_an_image(tmp_path):
    result = zoo_cli("generate", "a cat", "--model", "skyreels-v1-tiny", "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and "needs an image to animate; give one (--image FILE)" in result.stderr
    assert result.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_generate_animates_an_image_with_the_embedded_default(tmp_path):
    out = tmp_path / "frames"
    result = zoo_cli("generate", "a cat on the grass", "--image", image_file(tmp_path, "rgb"), "--frames", "5",
                     "--steps", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "loading hunyuanvideo-i2v-tiny" in result.stderr
    assert len(list(out.iterdir())) == 5


@pytest.mark.parametrize("preset", ["hunyuanvideo-i2v-tiny", "skyreels-v1-tiny"])
def test_the_embedded_image_to_video_defaults_follow_their_image(preset):
    pipe = zoo.from_pretrained(preset)
    first = pipe("a cat", image=sample_image(0), seed=3, progress=False)
    assert first.frames.shape == (1, 9, 64, 64, 3)
    assert np.array_equal(first.frames, pipe("a cat", image=sample_image(0), seed=3, progress=False).frames)
    assert not np.array_equal(first.frames, pipe("a cat", image=sample_image(1), seed=3, progress=False).frames)


def test_low_memory_encodes_the_image_in_a_stage_of_its_own_and_gives_the_same_frames():
    settings = dict(image=sample_image(0), seed=2, num_frames=5, num_inference_steps=2, progress=False)
    low = zoo.from_pretrained("hunyuanvideo-i2v-tiny", memory="low")
    result = low("a cat", **settings)
    assert [s.name for s in result.stages if not s.name.startswith("load")] == [
        "encode", "encode image", "denoise", "decode"]
    assert low.components.built.keys() <= {"scheduler"}  # each released after its stage
    fast = zoo.from_pretrained("hunyuanvideo-i2v-tiny", memory="fast")
    assert np.array_equal(result.frames, fast("a cat", **settings).frames)
