"""int8 linear layers (``compute_dtype="int8"``): the quantization, the kernel's arithmetic and
the transformer computed that way.

The kernel is checked against float64 products of operands quantized by the rule written out
here in numpy, so what is tested is the arithmetic (layouts, chunks, row blocks, scales and
post-ops), not int8's rounding; the transformer's distance from diffusers float32 is bounded
and reported. Kernel tests need AMX-INT8 and the compiled module; the fallback is tested on
every machine.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pydantic
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from plugins.common import int8, runtime
from plugins.common.layers import Linear
from plugins.common.precision import QUANTIZED, bf16_operand, computable, narrow, stored_of, to_float32
from plugins.hunyuanvideo_text.config import LlamaEncoderConfig
from tests.test_lora import diffusers_with, draw_lora, write
from tests.test_onednn import destination, paths, post_ops, widened
from tests.test_precision import call, inputs, load, reference_output
from tests.test_transformer_parity import reference_model, tiny

needs_int8 = pytest.mark.skipif(int8.unavailable() is not None,
                                reason=f"int8 matmuls cannot run here: {int8.unavailable()}")


def quantized(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule: each row times 127 / its largest magnitude (float32), rounded half to even."""
    values = to_float32(x, "BF16") if x.dtype == np.uint16 else x
    top = np.abs(values).max(axis=1)
    zero = top == 0
    inverse = np.float32(127) / np.where(zero, np.float32(1), top)
    rows = np.rint(values * inverse[:, None]).astype(np.int8)
    rows[zero] = 0
    return rows, np.where(zero, np.float32(1), top / np.float32(127)).astype(np.float32)


def sample(rng: np.random.Generator, rows: int, width: int, bf16: bool, zero_rows: bool) -> np.ndarray:
    x = rng.standard_normal((rows, width), dtype=np.float32) * rng.uniform(0.01, 100, (rows, 1)).astype(np.float32)
    if zero_rows:
        x[rng.random(rows) < 0.3] = 0
    return narrow(x, "BF16") if bf16 else x


@needs_int8
@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), width=st.sampled_from([64, 128, 576]), bf16=st.booleans(), zero_rows=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_rows_are_quantized_to_127_steps_of_their_largest_magnitude(rows, width, bf16, zero_rows, seed):
    x = sample(np.random.default_rng(seed), rows, width, bf16, zero_rows)
    got, expected = int8.quantize_rows(x), quantized(x)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def check_linear(rows, width, outputs, activation, gated, residual, bf16_in, out, seed):
    """``residual + gate * activation(x @ W.T + b)`` with both operands quantized per row."""
    rng = np.random.default_rng(seed)
    x = sample(rng, rows, width, bf16_in, zero_rows=rows > 1)
    weight = int8.quantize_rows(rng.standard_normal((outputs, width), dtype=np.float32) * 0.05)
    bias = rng.standard_normal(outputs).astype(np.float32)
    gate = rng.standard_normal(outputs).astype(np.float32) if gated else None
    add = rng.standard_normal((rows, outputs)).astype(np.float32) if residual else None
    x_rows, x_scales = quantized(x)
    sums = x_rows.astype(np.int64) @ weight[0].T.astype(np.int64)
    product = sums * x_scales[:, None].astype(np.float64) * weight[1].astype(np.float64) + bias
    expected = post_ops(product, activation, gate, add)
    target = None if out is None else destination(rng, rows, outputs, out == "bf16")
    actual = int8.linear(x, weight, bias, activation, gate, add, target)
    assert target is None or actual is target
    tolerance = 1e-5 * np.abs(expected).max() + 1e-5
    if out == "bf16":
        tolerance += 2.0 ** -8 * np.abs(expected).max()
    np.testing.assert_allclose(widened(actual), expected, rtol=1e-5, atol=tolerance)


@needs_int8
@settings(max_examples=30, deadline=None)
@given(rows=st.sampled_from([1, 17, 33, 130, 300]), width=st.sampled_from([64, 1088, 4160]),
       outputs=st.sampled_from([32, 160, 1056]), activation=st.sampled_from([None, "gelu_tanh", "silu"]),
       gated=st.booleans(), residual=st.booleans(), bf16_in=st.booleans(),
       out=st.sampled_from([None, "float32", "bf16"]), seed=st.integers(0, 2**31 - 1))
def test_int8_linear_is_the_product_of_its_quantized_operands(rows, width, outputs, activation, gated, residual,
                                                             bf16_in, out, seed):
    """Over the kernel's branches: K in one step, in several (1088 bytes) and in several chunks
    (4160), one panel and several, partial row blocks, and panels laid out for 128 rows or more."""
    check_linear(rows, width, outputs, activation, gated, residual, bf16_in, out, seed)


@needs_int8
@settings(max_examples=2, deadline=None)
@given(rows=st.integers(4097, 8300), seed=st.integers(0, 2**31 - 1))
def test_int8_linear_over_several_passes_of_rows(rows, seed):
    check_linear(rows, 64, 64, "silu", True, True, True, "float32", seed)


def test_int8_linear_refuses_what_its_kernel_cannot_take():
    weight = (np.zeros((32, 96), np.int8), np.ones(32, np.float32))
    with pytest.raises(ValueError, match="K a multiple of 64 and N of 32"):
        int8.linear(np.zeros((4, 96), np.float32), weight)
    with pytest.raises(ValueError, match="K a multiple of 64"):
        int8.quantize_rows(np.zeros((4, 96), np.float32))


def wide(**options) -> dict:
    """A transformer whose linear layers all take int8: every K a multiple of 64, every N of 32."""
    return tiny(in_channels=16, out_channels=16, attention_head_dim=32, rope_axes_dim=(8, 12, 12),
                text_embed_dim=64, pooled_projection_dim=64, **options)


@pytest.fixture(scope="module")
def wide_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    reference_model(wide(), 7).to(torch.bfloat16).save_pretrained(folder)
    return folder


@needs_int8
def test_int8_transformer_stays_close_to_diffusers_float32(wide_folder, monkeypatch):
    config = wide()
    args = inputs(config, 3)
    expected = reference_output(reference_model(config, 7).to(torch.bfloat16).float(), config, *args)
    taken: list[tuple[int, int]] = []
    kernel = int8.linear
    monkeypatch.setattr(int8, "linear", lambda x, weight, *rest, **named: taken.append(weight[0].shape)
                        or kernel(x, weight, *rest, **named))
    backbone = load(wide_folder, compute_dtype="int8")
    assert paths(backbone) == {"int8"}
    actual = call(backbone, config, *args)
    layers = [cell for _, cell in backbone.network.cells_and_names() if isinstance(cell, Linear)]
    assert {tuple(cell.weight.shape) for cell in layers} <= set(taken)
    scale = max(1.0, float(np.abs(expected).max()))
    bf16 = call(load(wide_folder, compute_dtype="bfloat16"), config, *args)
    assert np.abs(actual - expected).max() <= 5e-2 * scale
    assert np.abs(actual - expected).max() > np.abs(bf16 - expected).max()  # int8 is the coarser of the two


def test_without_amx_int8_it_says_so_once_and_computes_in_bf16(wide_folder, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "_NOTICES", set())
    monkeypatch.setattr(int8, "unavailable", lambda: "this CPU has no AMX-INT8 instructions")
    monkeypatch.setattr(runtime.onednn, "bf16_unavailable", lambda: None)
    first, second = (load(wide_folder, compute_dtype="int8") for _ in range(2))
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        "hunyuanvideo-transformer: computing in bf16, not int8: this CPU has no AMX-INT8 instructions")
    assert paths(first) == paths(second) == {"bf16"}


@needs_int8
def test_int8_weights_are_quantized_once_in_place_of_their_storage(wide_folder):
    backbone = load(wide_folder, compute_dtype="int8")
    weight = backbone.network.transformer_blocks[0].ff.net[2].weight
    bits = bf16_operand(weight)[0].copy()
    first = int8.operand(weight)
    expected = int8.quantize_rows(bits)
    np.testing.assert_array_equal(first[0], expected[0])
    np.testing.assert_array_equal(first[1], expected[1])
    assert stored_of(weight).dtype == QUANTIZED and weight.dtype == ms.int8
    assert np.shares_memory(int8.operand(weight)[0], stored_of(weight).array)  # no second quantization
    np.testing.assert_array_equal(computable(weight).asnumpy(), expected[0] * expected[1][:, None])
    weight.adapters = ["an adapter"]
    assert int8.operand(weight) is None


@needs_int8
def test_lora_on_int8_weights(wide_folder, tmp_path):
    """A LoRA loaded after the weights were quantized: its layers compute in bf16 on the int8
    weights widened plus the adapters, the output stays as close to diffusers' as without it,
    and removing it gives back the int8 output exactly."""
    config, args = wide(), inputs(wide(), 4)
    model = reference_model(config, 7).to(torch.bfloat16).float()
    lora = draw_lora(model, np.random.default_rng(4), 0.5, 2)
    write(lora, model, "peft", tmp_path / "lora.safetensors")
    backbone = load(wide_folder, compute_dtype="int8")
    plain = call(backbone, config, *args)
    name = backbone.load_lora(tmp_path / "lora.safetensors", strength=0.8)
    expected = reference_output(diffusers_with(model, [tmp_path / "lora.safetensors"], [0.8]), config, *args)
    actual = call(backbone, config, *args)
    assert np.abs(actual - expected).max() <= 5e-2 * max(1.0, float(np.abs(expected).max()))
    assert not np.allclose(actual, plain)
    backbone.adapters.remove(name)
    np.testing.assert_array_equal(call(backbone, config, *args), plain)


def test_only_the_transformer_takes_int8():
    with pytest.raises(pydantic.ValidationError, match="compute_dtype"):
        LlamaEncoderConfig(compute_dtype="int8")
