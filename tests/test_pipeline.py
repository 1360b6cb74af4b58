"""Text to video end to end: parity with diffusers' HunyuanVideoPipeline, the embedded
default, `zoo generate`, and every bad input refused before heavy work."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKLHunyuanVideo,
    FlowMatchEulerDiscreteScheduler,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
)
from transformers import CLIPTextModel, LlamaModel

import zoo
from plugins.common.checkpoint import CheckpointError
from registry import RegistryError
from tests.text_fixtures import randomized
from zoo import tiny

SHORT_TEMPLATE = {"template": "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"}
PROMPT = "a red cat walks slowly on the grass"
SIZE = dict(height=32, width=32, num_frames=5, num_inference_steps=3)


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory):
    """A tiny HunyuanVideoPipeline with random weights, saved by diffusers (the transformer sharded)."""
    tokenizer, tokenizer_2 = tiny.llama_tokenizer(), tiny.clip_tokenizer()
    transformer = randomized(HunyuanVideoTransformer3DModel(**tiny.TRANSFORMER), 1)
    vae = AutoencoderKLHunyuanVideo(**tiny.VAE, down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                    up_block_types=("HunyuanVideoUpBlock3D",) * 4)
    pipe = HunyuanVideoPipeline(
        text_encoder=randomized(LlamaModel(tiny.llama_config(tokenizer)), 2), tokenizer=tokenizer,
        transformer=transformer, vae=randomized(vae, 3), scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
        text_encoder_2=randomized(CLIPTextModel(tiny.clip_config(tokenizer_2)), 4), tokenizer_2=tokenizer_2)
    folder = tmp_path_factory.mktemp("reference") / "pipeline"
    pipe.save_pretrained(folder, max_shard_size="100KB")
    assert len(list((folder / "transformer").glob("*.safetensors"))) > 1
    return folder


def initial_latents(batch: int, seed: int = 0) -> np.ndarray:
    shape = (batch, 16, (SIZE["num_frames"] - 1) // 4 + 1, SIZE["height"] // 8, SIZE["width"] // 8)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def reference_frames(folder: Path, latents: np.ndarray, **kwargs) -> np.ndarray:
    pipe = HunyuanVideoPipeline.from_pretrained(folder)
    with torch.no_grad():
        video = pipe(prompt=PROMPT, latents=torch.from_numpy(latents), output_type="np", **SIZE, **kwargs).frames
    return np.round(np.asarray(video) * 255).astype(np.int16)


@pytest.mark.parametrize("case", [
    dict(),
    dict(prompt_template={**SHORT_TEMPLATE, "crop_start": 4}),
    dict(negative_prompt="blurry, dark", true_cfg_scale=3.0, guidance_scale=4.0),
], ids=["default-template", "short-template", "true-cfg"])
def test_frames_equal_diffusers_given_the_same_latents(reference_folder, case):
    latents = initial_latents(1)
    ours = zoo.from_pretrained(reference_folder)(PROMPT, latents=latents, progress=False, **SIZE, **case)
    expected = reference_frames(reference_folder, latents, **case)
    assert ours.frames.shape == expected.shape == (1, 5, 32, 32, 3) and ours.frames.dtype == np.uint8
    assert np.abs(ours.frames.astype(np.int16) - expected).max() <= 1
    assert ours.frames.std() > 0


def test_the_published_layout_with_a_swapped_scheduler(reference_folder):
    pipe = zoo.from_pretrained(reference_folder, scheduler="flow-match-heun")
    assert pipe.scheduler.config.shift == 7.0  # read from scheduler/scheduler_config.json
    assert type(pipe.scheduler).__name__ == "FlowMatchHeun"


def test_the_embedded_default_is_deterministic_and_prompt_dependent():
    pipe = zoo.from_pretrained("hunyuanvideo-tiny")
    first = pipe("a cat", seed=3, progress=False)
    assert first.frames.shape == (1, 9, 64, 64, 3)
    assert np.array_equal(first.frames, pipe("a cat", seed=3, progress=False).frames)
    assert not np.array_equal(first.frames, pipe("a dog", seed=3, progress=False).frames)
    assert not np.array_equal(first.frames, pipe("a cat", seed=4, progress=False).frames)
    two = pipe(["a cat", "a dog"], num_videos_per_prompt=2, seed=3, num_inference_steps=2, progress=False)
    assert two.frames.shape == (4, 9, 64, 64, 3)


def zoo_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "GLOG_v": "3"})


@pytest.mark.parametrize("out", ["video.mp4", "video.gif", "frames"])
def test_generate_writes_a_video_pyav_decodes(tmp_path, out):
    result = zoo_cli("generate", "a cat on the grass", "--frames", "5", "--steps", "2", "--out",
                     str(tmp_path / out))
    assert result.returncode == 0, result.stderr
    path = tmp_path / out
    if path.is_dir():
        files = sorted(path.iterdir())
        assert [f.name for f in files] == [f"frame_{i:04d}.png" for i in range(5)]
        frame = next(av.open(str(files[0])).decode(video=0)).to_ndarray(format="rgb24")
        assert frame.shape == (64, 64, 3)
    else:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
    assert [p.name for p in tmp_path.iterdir()] == [out]  # no temporary file left beside it


@pytest.fixture(scope="module")
def broken_folders(reference_folder, tmp_path_factory):
    """Copies of the reference pipeline, each damaged one way."""
    root = tmp_path_factory.mktemp("broken")

    def copy(name):
        return Path(shutil.copytree(reference_folder, root / name))

    pickled = copy("pickled")
    for file in (pickled / "vae").glob("*.safetensors*"):
        file.unlink()
    (pickled / "vae" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickled")
    truncated = copy("truncated")
    shard = sorted((truncated / "transformer").glob("*.safetensors"))[-1]
    shard.write_bytes(shard.read_bytes()[:-100])
    missing = copy("missing-shard")
    sorted((missing / "transformer").glob("*.safetensors"))[0].unlink()
    misfit = copy("misfit")
    config = json.loads((misfit / "transformer" / "config.json").read_text())
    (misfit / "transformer" / "config.json").write_text(json.dumps({**config, "num_layers": 2}))
    no_vae = copy("no-vae")
    shutil.rmtree(no_vae / "vae")
    return {"pickled": pickled, "truncated": truncated, "missing-shard": missing, "misfit": misfit,
            "no-vae": no_vae}


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "10"], "num_frames must be 4k+1 (1, 5, 9, ...), got 10; try 9"),
    (["--height", "40"], "height must be a positive multiple of 16, got 40"),
    (["--width", "0"], "width must be a positive multiple of 16, got 0"),
    (["--steps", "0"], "num_inference_steps must be at least 1, got 0"),
    (["--model", "hunyuanvideo-tiyn"], "did you mean 'hunyuanvideo-tiny'?"),
    (["--model", "/no/such/folder"], "no such folder or preset"),
    (["--scheduler", "flow-match-eulr"], "did you mean 'flow-match-euler'"),
    (["--out", "video.avi"], "unsupported output '.avi'"),
], ids=["frames", "height", "width", "steps", "model", "folder", "scheduler", "out"])
def test_generate_refuses_bad_input_in_one_line(tmp_path, args, message):
    result = zoo_cli("generate", "a cat", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("zoo: error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and "loading" not in result.stderr  # refused before loading
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_an_empty_prompt(tmp_path):
    result = zoo_cli("generate", "  ", cwd=tmp_path)
    assert result.returncode == 2 and "prompt is empty" in result.stderr


@pytest.mark.parametrize(("damage", "message"), [
    ("pickled", "only safetensors are read"),
    ("truncated", "truncated"),
    ("missing-shard", "are missing"),
    ("no-vae", "has no vae/"),
], ids=["pickled", "truncated", "missing-shard", "no-vae"])
def test_damaged_checkpoints_are_refused_before_any_component_loads(broken_folders, tmp_path, damage, message):
    result = zoo_cli("generate", "a cat", "--model", str(broken_folders[damage]), "--out", str(tmp_path / "v.mp4"))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "loading" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_config_that_does_not_fit_its_weights_lists_the_difference(broken_folders):
    with pytest.raises(CheckpointError, match=r"missing \(\d+\): transformer_blocks\.1\."):
        zoo.from_pretrained(broken_folders["misfit"])


def test_assemble_by_preset_name_and_unknown_names():
    assert zoo.assemble("hunyuanvideo-tiny").defaults["num_frames"] == 9
    with pytest.raises(ValueError, match="did you mean 'hunyuanvideo-tiny'"):
        zoo.assemble("hunyuanvideo-tini")
    with pytest.raises(RegistryError, match="did you mean 'hunyuanvideo-vae'"):
        zoo.from_pretrained("hunyuanvideo-tiny", autoencoder="hunyuanvideo-vea")


def test_a_repo_id_not_in_the_local_cache_is_refused_without_downloading(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        zoo.from_pretrained("hunyuanvideo-community/HunyuanVideo")
