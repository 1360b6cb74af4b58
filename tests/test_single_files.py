"""Single files and LoRA adapters through ``zoo.from_pretrained`` and ``zoo generate``.

The tiny preset's own weights are rewritten as the files people hold (the transformer in the
original layout, LLaMA as ``LlamaForCausalLM`` with ``lm_head``, CLIP-L with its
``text_projection``): a pipeline reading them makes the same frames as the preset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import zoo
from tests.format_fixtures import to_original
from tests.test_lora import draw_lora, write
from zoo.cli import main
from zoo.tiny import tiny_pipeline_folder

SETTINGS = dict(num_inference_steps=2, seed=3)


class _State:
    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        self.state = state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.state


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder, root = tiny_pipeline_folder(), tmp_path_factory.mktemp("files")
    transformer = load_file(str(folder / "transformer" / "model.safetensors"))
    llama = load_file(str(folder / "text_encoder" / "model.safetensors"))
    clip = load_file(str(folder / "text_encoder_2" / "model.safetensors"))
    width = clip["embeddings.token_embedding.weight"].shape[1]
    out = {name: root / f"{name}.safetensors" for name in ("transformer", "llama", "clip", "lora", "vae")}
    save_file({k: v.to(torch.bfloat16) for k, v in to_original(transformer).items()}, str(out["transformer"]))
    save_file({f"model.{k}": v for k, v in llama.items()} | {"lm_head.weight": llama["embed_tokens.weight"].clone()},
              str(out["llama"]))
    save_file({f"text_model.{k}": v for k, v in clip.items()} | {"text_projection.weight": torch.zeros(width, width)},
              str(out["clip"]))
    save_file(load_file(str(folder / "vae" / "model.safetensors")), str(out["vae"]))
    model = _State(transformer)
    write(draw_lora(model, np.random.default_rng(0), 0.5, 2), model, "kohya", out["lora"])
    return out


def frames(**files) -> np.ndarray:
    return zoo.from_pretrained("hunyuanvideo-tiny", **files)("a red cat", **SETTINGS).frames


def test_single_files_make_the_presets_frames(files):
    expected = frames()
    bf16 = frames(transformer=files["transformer"])
    assert np.abs(bf16.astype(int) - expected.astype(int)).max() <= 2  # the transformer in bf16
    np.testing.assert_array_equal(frames(text_encoder=files["llama"], text_encoder_2=files["clip"],
                                         vae=files["vae"]), expected)


def test_lora_through_from_pretrained_and_load_lora(files):
    plain = frames()
    with_lora = frames(loras=[{"path": str(files["lora"]), "strength": 0.7}])
    assert not np.array_equal(with_lora, plain)
    pipe = zoo.from_pretrained("hunyuanvideo-tiny", memory="low")
    assert pipe.load_lora(files["lora"], strength=0.7) == "lora"
    np.testing.assert_array_equal(pipe("a red cat", **SETTINGS).frames, with_lora)


def test_cli_generates_from_single_files_and_loras(files, tmp_path):
    out = tmp_path / "clip.gif"
    code = main(["generate", "a red cat", "--transformer", str(files["transformer"]), "--text-encoder",
                 str(files["llama"]), "--lora", f"{files['lora']}:0.5", "--steps", "1", "--out", str(out)])
    assert code == 0 and out.is_file()


@pytest.mark.parametrize("flag", ["--transformer", "--vae", "--lora"])
def test_cli_bad_file_is_one_line_and_exit_2(files, tmp_path, capsys, flag):
    pickled = tmp_path / "weights.ckpt"
    pickled.write_bytes(b"\x80\x04")
    out = tmp_path / "clip.gif"
    assert main(["generate", "a red cat", flag, str(pickled), "--steps", "1", "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1 and ".safetensors" in errors[0]
    assert not list(tmp_path.glob("*clip*"))


def test_cli_lora_for_another_model_is_exit_2(files, tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    save_file({"lora_unet_blocks_0_attn_q.lora_down.weight": torch.zeros(2, 4),
               "lora_unet_blocks_0_attn_q.lora_up.weight": torch.zeros(4, 2)}, str(other))
    out = tmp_path / "clip.gif"
    assert main(["generate", "a red cat", "--lora", str(other), "--steps", "1", "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1 and "lora_unet_blocks_0_attn_q" in errors[0] and not out.exists()
