"""Single files in the original (Tencent/ComfyUI) key layout, fp8 and scaled fp8, against diffusers.

Every file is written here from a diffusers model (``format_fixtures.to_original``), and the
reference reads the same file with diffusers' own loader where it has one:
``from_single_file`` (with a local ``config=`` folder, so nothing is downloaded) for the
original layout, and layerwise-cast fp8 storage for fp8. diffusers' single-file conversion
assumes the 13B model's width (3072) when it splits the single blocks' ``linear1``, so the
configurations it reads have no single blocks; with single blocks the reference is the
model the file was written from.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

import zoo
from plugins.common.checkpoint import CheckpointError
from plugins.common.fp8 import table
from tests.format_fixtures import from_original, to_original
from tests.test_precision import call, inputs, reference_output
from tests.test_transformer_parity import TOLERANCE, configs, reference_model, tiny

FP8_MAX = 448.0  # the largest finite float8_e4m3fn


def close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual - expected).max())
    assert diff <= TOLERANCE * scale, f"max abs diff {diff:.3g} at output scale {scale:.3g}"


def load_file(file: Path, config: dict, **options):
    return zoo.load_component("backbone", "hunyuanvideo-transformer", weights=file, **config, **options)


def config_folder(root: Path, model: HunyuanVideoTransformer3DModel) -> Path:
    """A diffusers config folder for ``from_single_file(config=...)``."""
    folder = root / "config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(dict(model.config)))
    return folder


def from_single_file(file: Path, config: Path, dtype: torch.dtype = torch.float32) -> HunyuanVideoTransformer3DModel:
    return HunyuanVideoTransformer3DModel.from_single_file(str(file), config=str(config), torch_dtype=dtype,
                                                           local_files_only=True).eval()


@given(config=configs(), stored=st.sampled_from(["float32", "bfloat16"]), seed=st.integers(0, 2**31 - 1))
def test_original_layout_equals_diffusers_from_single_file(config, stored, seed):
    config = {**config, "num_single_layers": 0}
    model = reference_model(config, seed).to(getattr(torch, stored))
    args = inputs(config, seed)
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        file = root / "hunyuan_video_t2v_720p.safetensors"
        save_file(to_original(model.state_dict()), str(file))
        reference = from_single_file(file, config_folder(root, model))
        expected = reference_output(reference, config, *args)
        ours = load_file(file, config, compute_dtype="float32")  # bf16 weights computed as diffusers does here
        actual = call(ours, config, *args)
    close(actual, expected)


@given(config=configs(), seed=st.integers(0, 2**31 - 1), prefix=st.sampled_from(["", "model.diffusion_model."]))
def test_original_layout_with_single_blocks_equals_its_source(config, seed, prefix):
    model = reference_model(config, seed)
    args = inputs(config, seed)
    expected = reference_output(model, config, *args)
    with tempfile.TemporaryDirectory() as root:
        file = Path(root) / "t.safetensors"
        save_file({prefix + key: value for key, value in to_original(model.state_dict()).items()}, str(file))
        actual = call(load_file(file, config), config, *args)
    close(actual, expected)


def test_fused_weights_are_views_of_one_read(tmp_path):
    config = tiny()
    file = tmp_path / "t.safetensors"
    save_file(to_original(reference_model(config, 0).state_dict()), str(file))
    network = load_file(file, config).network
    params = dict(network.parameters_and_names())
    q, k = (params[f"transformer_blocks.0.attn.to_{x}.weight"].stored.array for x in "qk")
    assert q.base is not None and q.base is k.base


@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_tables_decode_every_byte_as_torch(fp8):
    expected = torch.arange(256, dtype=torch.uint8).view(getattr(torch, fp8)).float().numpy()
    name = {"float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2"}[fp8]
    np.testing.assert_array_equal(table(name), expected)


@given(config=configs(), seed=st.integers(0, 2**31 - 1), fp8=st.sampled_from(["float8_e4m3fn", "float8_e5m2"]),
       stream=st.sampled_from(["on", "off"]))
def test_fp8_equals_diffusers_layerwise_casting(config, seed, fp8, stream):
    """diffusers holds the weights in fp8 and casts each layer to float32 as it runs (its
    default skips norms and the patch embedding, which stay float32 in the file too)."""
    model = reference_model(config, seed)
    model.enable_layerwise_casting(storage_dtype=getattr(torch, fp8), compute_dtype=torch.float32)
    args = inputs(config, seed)
    expected = reference_output(model, config, *args)
    state = model.state_dict()
    assert any(value.dtype == getattr(torch, fp8) for value in state.values())
    with tempfile.TemporaryDirectory() as root:
        file = Path(root) / "t.safetensors"
        save_file(to_original(state), str(file))
        ours = load_file(file, config, stream_weights=stream)
        dtypes = {p.dtype for p in ours.network.get_parameters()}
        actual = call(ours, config, *args)
    assert getattr(ms, fp8) in dtypes
    close(actual, expected)


def scaled_fp8(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """ComfyUI's scaled fp8 of a state dict: every 2D weight as ``float8_e4m3fn`` of ``w / s`` with
    ``s = max|w| / 448``, its ``scale_weight`` and ``scale_input`` beside it, and the ``scaled_fp8``
    marker; and the dequantised float32 state dict (``w8.float() * s``)."""
    scaled, dequantised = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}, {}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2:
            scale = (value.abs().max() / FP8_MAX).clamp(min=1e-12).float()
            quantised = (value / scale).to(torch.float8_e4m3fn)
            module = key[: -len(".weight")]
            scaled[key], scaled[f"{module}.scale_weight"] = quantised, scale.reshape(1)
            scaled[f"{module}.scale_input"] = torch.ones(1)
            dequantised[key] = quantised.float() * scale
        else:
            scaled[key] = dequantised[key] = value
    return scaled, dequantised


@given(config=configs(), seed=st.integers(0, 2**31 - 1), stream=st.sampled_from(["on", "off"]))
def test_scaled_fp8_equals_its_dequantised_weights_in_diffusers(config, seed, stream):
    """Quantised in the original layout, as ComfyUI's files are (one scale per fused tensor)."""
    model = reference_model(config, seed)
    scaled, dequantised = scaled_fp8(to_original(model.state_dict()))
    model.load_state_dict(from_original(dequantised, model.state_dict()))
    args = inputs(config, seed)
    expected = reference_output(model, config, *args)
    with tempfile.TemporaryDirectory() as root:
        file = Path(root) / "t.safetensors"
        save_file(scaled, str(file))
        ours = load_file(file, config, stream_weights=stream)
        actual = call(ours, config, *args)
        assert ms.float8_e4m3fn in {p.dtype for p in ours.network.get_parameters()}
    close(actual, expected)


# --- bad input: one line each ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def original_file(tmp_path_factory) -> Path:
    file = tmp_path_factory.mktemp("original") / "t.safetensors"
    save_file(to_original(reference_model(tiny(), 0).state_dict()), str(file))
    return file


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_truncated_single_file_is_refused(original_file, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(original_file.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as error:
        load_file(cut, tiny())
    assert "truncated" in one_line(error)


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth"])
def test_pickled_single_file_is_refused_naming_the_safetensors_release(tmp_path, suffix):
    pickled = tmp_path / f"hunyuan_video{suffix}"
    pickled.write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError) as error:
        load_file(pickled, tiny())
    assert "hunyuan_video_t2v_720p_bf16.safetensors" in one_line(error)


def test_scaled_fp8_without_its_scales_is_refused(tmp_path):
    scaled, _ = scaled_fp8(to_original(reference_model(tiny(), 0).state_dict()))
    file = tmp_path / "t.safetensors"
    save_file({k: v for k, v in scaled.items() if not k.endswith("img_attn_qkv.scale_weight")}, str(file))
    with pytest.raises(CheckpointError) as error:
        load_file(file, tiny())
    assert "without the scale_weight" in one_line(error)


@pytest.mark.parametrize(("keys", "looks_like"), [
    ({"decoder.conv_in.conv.weight": (4, 4, 3, 3, 3)}, "VAE"),
    ({"model.layers.0.self_attn.q_proj.weight": (4, 4)}, "LLaMA"),
    ({"text_model.encoder.layers.0.self_attn.q_proj.weight": (4, 4)}, "CLIP"),
    ({"double_blocks.0.img_attn.qkv.weight": (12, 4)}, "Flux"),
    ({"double_blocks.0.img_attn_qkv.lora_A.weight": (2, 4)}, "LoRA"),
])
def test_a_file_of_another_model_is_refused_by_what_it_looks_like(tmp_path, keys, looks_like):
    file = tmp_path / "other.safetensors"
    save_file({key: torch.zeros(shape) for key, shape in keys.items()}, str(file))
    with pytest.raises(CheckpointError) as error:
        load_file(file, tiny())
    assert looks_like in one_line(error) and "not the" in one_line(error)
