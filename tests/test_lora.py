"""LoRA adapters against diffusers' ``load_lora_weights`` + ``set_adapters``.

Each adapter is drawn in the original layout (one ``down`` for a fused ``qkv`` or ``linear1``,
its ``up`` rows covering the fused parts) and written in every format: diffusers/PEFT names
(the fused ``down`` repeated for each part, ``up`` split, as diffusers converts it), the
original layout (``diffusion_model.*.lora_up/lora_down``, and ``transformer.*.lora_A/lora_B``
which diffusers reads too), and kohya/musubi-tuner (``lora_unet_*`` with ``.alpha``, folded
into ``up`` for the other formats). The reference is diffusers reading the PEFT file; where
diffusers reads the original-layout file itself (no single blocks, whose split it sizes for
the 13B model, and no final modulation, whose ``down`` it splits too), it reads that one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import HunyuanVideoPipeline
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

import zoo
from plugins.common.checkpoint import CheckpointError
from tests.format_fixtures import original_module, to_original
from tests.test_formats import close, one_line
from tests.test_precision import call, inputs, reference_output
from tests.test_transformer_parity import configs, reference_model, tiny

FORMATS = ("peft", "original", "original-ab", "kohya")


def draw_lora(model, rng: np.random.Generator, share: float, rank: int, exclude: tuple[str, ...] = (),
              include: tuple[str, ...] = ()) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Original module -> (up, down, alpha) for about ``share`` of the model's 2D weights (none
    whose name contains one of ``exclude``; those in ``include`` always)."""
    original = to_original(model.state_dict())
    modules = sorted(key[: -len(".weight")] for key, value in original.items()
                     if key.endswith(".weight") and value.ndim == 2 and not any(x in key for x in exclude))
    chosen = [m for m in modules if rng.random() < share or m in include] or modules[:1]
    lora = {}
    for module in chosen:
        rows, columns = original[f"{module}.weight"].shape
        up = torch.from_numpy(rng.standard_normal((rows, rank), dtype=np.float32) * 0.1)
        down = torch.from_numpy(rng.standard_normal((rank, columns), dtype=np.float32) * 0.1)
        lora[module] = (up, down, float(rng.choice([rank, rank / 2, 2 * rank])))
    return lora


def diffusers_modules(model) -> dict[str, tuple[str, list[str]]]:
    """Original module -> the diffusers modules it fuses, for the model's linear layers."""
    out = {}
    for key in model.state_dict():
        module = key.rpartition(".")[0]
        target, parts = original_module(module)
        out[target] = (target, parts)
    return out


def write(lora: dict, model, fmt: str, file: Path) -> None:
    tensors = {}
    for module, (up, down, alpha) in lora.items():
        rank = down.shape[0]
        if fmt == "kohya":
            flat = "lora_unet_" + module.replace(".", "_")
            tensors |= {f"{flat}.lora_up.weight": up, f"{flat}.lora_down.weight": down,
                        f"{flat}.alpha": torch.tensor(alpha)}
            continue
        up = up * (alpha / rank)
        if fmt == "original":
            tensors |= {f"diffusion_model.{module}.lora_up.weight": up,
                        f"diffusion_model.{module}.lora_down.weight": down}
        elif fmt == "original-ab":
            tensors |= {f"transformer.{module}.lora_B.weight": up, f"transformer.{module}.lora_A.weight": down}
        else:
            _, parts = diffusers_modules(model)[module]
            state = model.state_dict()
            sizes = [state[f"{part}.weight"].shape[0] for part in parts]
            if module == "final_layer.adaLN_modulation.1":  # (shift, scale) -> diffusers' (scale, shift)
                shift, scale = up.chunk(2)
                up = torch.cat([scale, shift])
            for part, piece in zip(parts, torch.split(up, sizes), strict=True):
                tensors |= {f"transformer.{part}.lora_B.weight": piece.contiguous(),
                            f"transformer.{part}.lora_A.weight": down.clone()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(file))


def diffusers_with(model, files: list[Path], strengths: list[float]):
    pipe = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=model, vae=None, scheduler=None,
                                text_encoder_2=None, tokenizer_2=None)
    names = [f"adapter{i}" for i in range(len(files))]
    for file, name in zip(files, names, strict=True):
        pipe.load_lora_weights(str(file), adapter_name=name)
    pipe.set_adapters(names, strengths)
    return pipe.transformer


def ours_with(folder: Path, files: list[Path], strengths: list[float]):
    loras = [{"path": str(f), "strength": s} for f, s in zip(files, strengths, strict=True)]
    return zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder, loras=loras)


@given(config=configs(), seed=st.integers(0, 2**31 - 1), fmt=st.sampled_from(FORMATS),
       strengths=st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=2), rank=st.integers(1, 4))
def test_lora_equals_diffusers_load_lora_weights(config, seed, fmt, strengths, rank):
    rng = np.random.default_rng(seed)
    model = reference_model(config, seed)
    args = inputs(config, seed)
    loras = [draw_lora(model, rng, 0.5, rank) for _ in strengths]
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        model.save_pretrained(root / "transformer")
        peft, ours_files = [], []
        for i, lora in enumerate(loras):
            write(lora, model, "peft", root / f"peft{i}.safetensors")
            write(lora, model, fmt, root / f"{fmt}{i}.safetensors")
            peft.append(root / f"peft{i}.safetensors")
            ours_files.append(root / f"{fmt}{i}.safetensors")
        expected = reference_output(diffusers_with(model, peft, strengths), config, *args)
        actual = call(ours_with(root / "transformer", ours_files, strengths), config, *args)
    close(actual, expected)


@given(config=configs(), seed=st.integers(0, 2**31 - 1), strength=st.floats(0.2, 1.5))
def test_original_layout_lora_read_by_diffusers_itself(config, seed, strength):
    """diffusers takes a file for the original layout only when it has an ``img_attn_qkv`` key, and
    splits the ``down`` of the refiner's ``self_attn_qkv`` and of the final modulation as if it were
    an ``up``: those are left out here (the test above covers them through the PEFT reference)."""
    config = {**config, "num_single_layers": 0, "num_layers": max(1, config["num_layers"])}
    rng = np.random.default_rng(seed)
    model = reference_model(config, seed)
    args = inputs(config, seed)
    lora = draw_lora(model, rng, 0.6, 2, exclude=("final_layer.adaLN_modulation", "self_attn_qkv"),
                     include=("double_blocks.0.img_attn_qkv",))
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        model.save_pretrained(root / "transformer")
        write(lora, model, "original-ab", root / "lora.safetensors")
        expected = reference_output(diffusers_with(model, [root / "lora.safetensors"], [strength]), config, *args)
        actual = call(ours_with(root / "transformer", [root / "lora.safetensors"], [strength]), config, *args)
    close(actual, expected)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    model = reference_model(tiny(), 0)
    model.save_pretrained(root / "transformer")
    lora = draw_lora(model, np.random.default_rng(0), 0.5, 2)
    write(lora, model, "kohya", root / "kohya.safetensors")
    return root, model, lora


def test_strength_change_remove_merge_and_unmerge(setup):
    root, model, _ = setup
    config, args = tiny(), inputs(tiny())
    backbone = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=root / "transformer")
    plain = call(backbone, config, *args)
    name = backbone.load_lora(root / "kohya.safetensors", strength=0.8)
    adapted = call(backbone, config, *args)
    assert not np.allclose(adapted, plain)
    backbone.adapters.merge()
    close(call(backbone, config, *args), adapted)
    backbone.adapters.unmerge()
    np.testing.assert_array_equal(call(backbone, config, *args), adapted)
    backbone.adapters.set_strength(name, 0.0)
    np.testing.assert_array_equal(call(backbone, config, *args), plain)
    backbone.adapters.set_strength(name, 0.8)
    backbone.adapters.remove(name)
    np.testing.assert_array_equal(call(backbone, config, *args), plain)


def load_bad(root: Path, tensors: dict[str, torch.Tensor]) -> str:
    file = root / "bad.safetensors"
    save_file(tensors, str(file))
    with pytest.raises(CheckpointError) as error:
        ours_with(root / "transformer", [file], [1.0])
    return one_line(error)


def test_keys_that_match_nothing_are_listed(setup):
    root, _, _ = setup
    message = load_bad(root, {"lora_unet_blocks_0_self_attn_q.lora_down.weight": torch.zeros(2, 4),
                              "lora_unet_blocks_0_self_attn_q.lora_up.weight": torch.zeros(4, 2)})
    assert "name no module" in message and "lora_unet_blocks_0_self_attn_q.lora_up.weight" in message


def test_a_lora_for_another_width_is_refused(setup):
    root, _, _ = setup
    message = load_bad(root, {"diffusion_model.double_blocks.0.img_attn_proj.lora_down.weight": torch.zeros(2, 99),
                              "diffusion_model.double_blocks.0.img_attn_proj.lora_up.weight": torch.zeros(16, 2)})
    assert "shapes do not fit" in message


def test_rank_differing_between_up_and_down_is_refused(setup):
    root, _, _ = setup
    message = load_bad(root, {"transformer.proj_out.lora_A.weight": torch.zeros(2, 16),
                              "transformer.proj_out.lora_B.weight": torch.zeros(8, 3)})
    assert "rank differs" in message
