"""Weights at their stored precision, streamed from mapped files, and released after use.

Parity: a bf16 or fp16 checkpoint, computed in float32, equals diffusers' model holding
the same stored values computed in float32. A streamed model equals the resident one
bit for bit. Memory is measured in fresh processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import mindspore as ms
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import zoo
from contracts import TextEmbeddings
from plugins.common import precision
from plugins.common.checkpoint import CheckpointError
from plugins.common.memory import MemoryBudgetError
from plugins.common.precision import narrow, stored_of, to_float32
from tests.test_transformer_parity import TOLERANCE, configs, reference_model, tiny

TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
MS_DTYPES = {"bfloat16": ms.bfloat16, "float16": ms.float16, "float32": ms.float32}


def inputs(config: dict, seed: int = 0) -> tuple[np.ndarray, np.ndarray, TextEmbeddings]:
    rng = np.random.default_rng(seed)
    latents = rng.standard_normal((1, config["in_channels"], 2 * config["patch_size_t"],
                                   2 * config["patch_size"], 2 * config["patch_size"]), dtype=np.float32)
    text = TextEmbeddings(hidden_states=rng.standard_normal((1, 3, config["text_embed_dim"]), dtype=np.float32),
                          attention_mask=np.array([[True, True, False]]),
                          pooled=rng.standard_normal((1, config["pooled_projection_dim"]), dtype=np.float32))
    return latents, np.array([700.0], np.float32), text


def reference_output(model, config: dict, latents, timestep, text) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(latents), torch.from_numpy(timestep),
                     torch.from_numpy(text.hidden_states), torch.from_numpy(text.attention_mask),
                     torch.from_numpy(text.pooled),
                     guidance=torch.tensor([6000.0]) if config["guidance_embeds"] else None,
                     return_dict=False)[0].numpy()


def load(folder, **options):
    return zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder, **options)


def call(backbone, config: dict, latents, timestep, text) -> np.ndarray:
    return backbone(latents, timestep, text, guidance=6.0 if config["guidance_embeds"] else None)


@given(config=configs(), stored=st.sampled_from(["bfloat16", "float16"]), stream=st.sampled_from(["on", "off"]),
       seed=st.integers(0, 2**31 - 1))
def test_stored_precision_computes_in_float32_as_diffusers(config, stored, stream, seed):
    reference = reference_model(config, seed).to(TORCH_DTYPES[stored])
    latents, timestep, text = inputs(config, seed)
    expected = reference_output(reference.float(), config, latents, timestep, text)
    with tempfile.TemporaryDirectory() as folder:
        reference.to(TORCH_DTYPES[stored]).save_pretrained(folder)
        ours = load(folder, stream_weights=stream, compute_dtype="float32")
        assert {p.dtype for p in ours.network.get_parameters()} == {MS_DTYPES[stored]}
        actual = call(ours, config, latents, timestep, text)
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(actual - expected).max()) <= TOLERANCE * scale


@pytest.fixture(scope="module")
def bf16_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bf16")
    reference_model(tiny(), 3).to(torch.bfloat16).save_pretrained(folder, max_shard_size=20_000)
    return folder


def test_streamed_equals_resident_bit_for_bit(bf16_folder):
    config = tiny()
    streamed, resident = load(bf16_folder, stream_weights="on"), load(bf16_folder, stream_weights="off")
    assert streamed.streamed and not resident.streamed
    assert all(stored_of(p).streamed for p in streamed.network.get_parameters())
    for seed in range(2):
        args = inputs(config, seed)
        np.testing.assert_array_equal(call(streamed, config, *args), call(resident, config, *args))


def test_weight_dtype_narrows_as_pytorch_rounds(bf16_folder, tmp_path):
    """float32 weights loaded as bfloat16 hold exactly the values PyTorch's own cast gives."""
    reference_model(tiny(), 3).save_pretrained(tmp_path)
    narrowed = load(tmp_path, weight_dtype="bfloat16")
    assert {p.dtype for p in narrowed.network.get_parameters()} == {ms.bfloat16}
    args = inputs(tiny())
    np.testing.assert_array_equal(call(narrowed, tiny(), *args), call(load(bf16_folder), tiny(), *args))


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=50))
def test_narrow_to_bfloat16_rounds_to_nearest_even_like_torch(values):
    array = np.array(values, np.float32)
    expected = torch.from_numpy(array).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(narrow(array, "BF16"), expected)
    np.testing.assert_array_equal(to_float32(narrow(array, "BF16"), "BF16"),
                                  torch.from_numpy(array).to(torch.bfloat16).float().numpy())


def test_compute_dtype_without_cpu_kernels_is_refused(bf16_folder):
    with pytest.raises(ValueError, match="CPU backend has no float16 batched matmul.*weight_dtype='float16'"):
        load(bf16_folder, compute_dtype="float16")


def test_budget_too_small_for_one_layer_is_one_line(bf16_folder, monkeypatch):
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", "1KB")
    with pytest.raises(MemoryBudgetError) as error:
        load(bf16_folder, stream_weights="on")
    message = str(error.value)
    assert "\n" not in message and "cannot hold even one layer" in message and "HUNYUAN_ZOO_MEMORY" in message


def test_auto_streams_when_the_checkpoint_exceeds_the_budget(bf16_folder, monkeypatch):
    stored = sum(f.stat().st_size for f in bf16_folder.glob("*.safetensors"))
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", str(stored))  # room for a layer, not for all with activations
    partly = load(bf16_folder)
    assert partly.streamed
    kept = [not stored_of(p).streamed for p in partly.network.get_parameters()]
    assert any(kept) and not all(kept)  # the first tensors held in memory, the rest streamed
    args = inputs(tiny())
    np.testing.assert_array_equal(call(partly, tiny(), *args), call(load(bf16_folder, stream_weights="off"),
                                                                    tiny(), *args))
    monkeypatch.setenv("HUNYUAN_ZOO_MEMORY", "1GB")
    assert not load(bf16_folder).streamed


def test_a_file_changed_while_streamed_stops_the_run(tmp_path):
    reference_model(tiny(), 4).to(torch.bfloat16).save_pretrained(tmp_path)
    streamed = load(tmp_path, stream_weights="on")
    shard = next(tmp_path.glob("*.safetensors"))
    os.utime(shard, ns=(0, 0))
    with pytest.raises(CheckpointError, match="changed while it was in use"):
        call(streamed, tiny(), *inputs(tiny()))


MEASURE = textwrap.dedent("""
    import json, sys
    import zoo
    from plugins.common.memory import give_back
    from tests.test_precision import call, inputs

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096

    config = json.loads(sys.argv[2])
    for _ in range(2):  # kernels and their work buffers ready, the allocator's pools at their size
        warm = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=sys.argv[1])
        call(warm, config, *inputs(config))
        del warm
    give_back()
    base = rss()
    backbone = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=sys.argv[1],
                                  stream_weights=sys.argv[3])
    loaded = rss()
    call(backbone, config, *inputs(config))
    del backbone
    give_back()
    print(json.dumps({"loaded": loaded - base, "released": rss() - base}))
""")


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory):
    """A bf16 checkpoint of about 50 MB, large against the process's own noise."""
    config = tiny(num_attention_heads=8, attention_head_dim=64, rope_axes_dim=(16, 24, 24), num_layers=1,
                  num_single_layers=1, num_refiner_layers=0, mlp_ratio=4.0)
    folder = tmp_path_factory.mktemp("wide")
    reference_model(config, 5).to(torch.bfloat16).save_pretrained(folder)
    return folder, config


def measure(folder, config: dict, stream: str) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(folder), json.dumps(config), stream],
                         check=True, capture_output=True, text=True, cwd=os.getcwd())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loading_costs_the_stored_bytes_once_and_release_gives_them_back(wide_folder):
    folder, config = wide_folder
    stored = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    figures = measure(folder, config, "off")
    assert 0.9 * stored <= figures["loaded"] <= 1.1 * stored, (figures, stored)
    assert figures["released"] <= 0.25 * stored, (figures, stored)


def test_streamed_weights_are_not_resident(wide_folder):
    folder, config = wide_folder
    stored = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    figures = measure(folder, config, "on")
    assert figures["loaded"] <= 0.1 * stored, (figures, stored)


def test_reusing_the_widening_buffer_changes_nothing(bf16_folder, monkeypatch):
    """Every widened weight through the one reused buffer (normally only the large ones)."""
    args = inputs(tiny())
    expected = call(load(bf16_folder), tiny(), *args)
    monkeypatch.setattr(precision, "_REUSE_ABOVE", 1)
    np.testing.assert_array_equal(call(load(bf16_folder), tiny(), *args), expected)
    assert precision._ARENA.buffer is not None
