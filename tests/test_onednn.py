"""bf16 matmuls and attention through oneDNN, and the choice between them and float32.

The kernels are checked against float64 products of the same bf16-rounded operands, so
what is tested is the arithmetic (layouts, strides, thread splits, fused bias, activation
and mask), not bf16's rounding. They need AVX512_BF16 or AMX; on other CPUs the tests that
run them are skipped, and the fallback to float32 (tested on every machine) is what runs.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaModel

import zoo
from plugins.common import native, onednn, runtime
from plugins.common.layers import Linear
from plugins.common.precision import narrow, to_float32
from tests.test_precision import call, inputs, load, reference_output
from tests.test_transformer_parity import reference_model, tiny
from tests.text_fixtures import TEMPLATE, llama_config, llama_tokenizer, randomized, reference_pipeline

needs_bf16 = pytest.mark.skipif(onednn.bf16_unavailable() is not None,
                                reason=f"bf16 matmuls cannot run here: {onednn.bf16_unavailable()}")


def rounded(array: np.ndarray) -> np.ndarray:
    return to_float32(narrow(array, "BF16"), "BF16").astype(np.float64)


@needs_bf16
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=600))
def test_to_bf16_rounds_to_nearest_even_like_torch(values):
    array = np.array(values, np.float32)
    expected = torch.from_numpy(array).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(onednn.to_bf16(array), expected)
    half = array.astype(np.float16)
    expected = torch.from_numpy(half).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(onednn.to_bf16(half), expected)


def widened(out: np.ndarray) -> np.ndarray:
    """A oneDNN output as float64, bf16 bits widened."""
    return (to_float32(out, "BF16") if out.dtype == np.uint16 else out).astype(np.float64)


def destination(rng: np.random.Generator, rows: int, columns: int, bf16: bool) -> np.ndarray:
    """Where a kernel may write: float32 or bf16 bits, its rows strided inside a wider array."""
    wider = np.empty((rows, columns + int(rng.integers(0, 5))), np.uint16 if bf16 else np.float32)
    start = int(rng.integers(0, wider.shape[1] - columns + 1))
    return wider[:, start:start + columns]


needs_amx_kernels = pytest.mark.skipif(native.library() is None or not onednn._has_amx(),
                                       reason="the fused kernels need AMX and the compiled module")


def spied(monkeypatch, request, name: str) -> list[bool]:
    """With ``request.param`` "onednn", ``onednn``'s fused kernel ``name`` is turned off; with "fused"
    it runs (the test skipped where it cannot), and the returned list records whether each call took it."""
    taken: list[bool] = []
    fused = getattr(onednn, name)
    if request.param == "onednn":
        monkeypatch.setattr(onednn, name, lambda *args: False)
    elif native.library() is None or not onednn._has_amx():
        pytest.skip("the fused kernels need AMX and the compiled module")
    else:
        monkeypatch.setattr(onednn, name, lambda *args: taken.append(fused(*args)) or taken[-1])
    return taken


@pytest.fixture(params=["onednn", "fused"])
def linear_kernel(request, monkeypatch):
    """Which linear runs: oneDNN's matmul, or the compiled AMX kernel where it can run (K and N
    multiples of 32). Returns the kernel's name and the list of calls the fused kernel took."""
    return request.param, spied(monkeypatch, request, "_fused_linear")


def post_ops(product: np.ndarray, activation: str | None, gate: np.ndarray | None,
             residual: np.ndarray | None) -> np.ndarray:
    """``residual + gate * activation(product)`` in float64, each part where given, by PyTorch."""
    out = torch.from_numpy(product.astype(np.float64))
    if activation == "gelu_tanh":
        out = torch.nn.functional.gelu(out, approximate="tanh")
    elif activation == "silu":
        out = torch.nn.functional.silu(out)
    return out.numpy() * (1.0 if gate is None else gate) + (0.0 if residual is None else residual)


def check_linear(linear_kernel, rows, width, outputs, bias, activation, gated, residual, bf16_in, out, seed):
    """``residual + gate * activation(x @ W.T + b)``, from float32 or bf16 input, into a new float32
    array or into strided float32 or bf16 rows."""
    name, taken = linear_kernel
    taken.clear()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    weight = narrow(rng.standard_normal((outputs, width), dtype=np.float32), "BF16")
    b = rng.standard_normal(outputs).astype(np.float32) if bias else None
    gate = rng.standard_normal(outputs).astype(np.float32) if gated else None
    add = rng.standard_normal((rows, outputs)).astype(np.float32) if residual else None
    product = rounded(x) @ to_float32(weight, "BF16").T.astype(np.float64)
    expected = post_ops(product if b is None else product + b, activation, gate, add)
    target = None if out is None else destination(rng, rows, outputs, out == "bf16")
    actual = onednn.linear(narrow(x, "BF16") if bf16_in else x, weight, b, activation, gate, add, target)
    assert target is None or actual is target
    tolerance = 1e-5 * np.sqrt(width) * (1.0 if gate is None else np.abs(gate).max()) + 1e-5
    if out == "bf16":
        tolerance += 2.0 ** -8 * np.abs(expected).max()
    np.testing.assert_allclose(widened(actual), expected, rtol=1e-5, atol=tolerance)
    assert taken == ([width % 32 == 0 and outputs % 32 == 0] if name == "fused" else [])


@needs_bf16
@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), width=st.one_of(st.integers(1, 64), st.sampled_from([32, 96])),
       outputs=st.sampled_from([1, 7, 64, 256, 600]), bias=st.booleans(),
       activation=st.sampled_from([None, "gelu_tanh", "silu"]), gated=st.booleans(), residual=st.booleans(),
       bf16_in=st.booleans(), out=st.sampled_from([None, "float32", "bf16"]), seed=st.integers(0, 2**31 - 1))
def test_linear_equals_the_float64_product_of_its_bf16_operands(linear_kernel, rows, width, outputs, bias, activation,
                                                               gated, residual, bf16_in, out, seed):
    check_linear(linear_kernel, rows, width, outputs, bias, activation, gated, residual, bf16_in, out, seed)


@needs_bf16
@needs_amx_kernels
@settings(max_examples=12, deadline=None)
@given(rows=st.sampled_from([1, 33, 130, 300]), width=st.sampled_from([32, 544, 4128]),
       outputs=st.sampled_from([32, 1024, 1056]), activation=st.sampled_from([None, "gelu_tanh"]),
       bf16_in=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_fused_linear_over_panels_steps_and_row_blocks(linear_kernel, rows, width, outputs, activation, bf16_in,
                                                       seed):
    """Shapes that take the fused kernel's other branches: K longer than its step of 512 (and than
    4096, where panels narrow to 64 outputs), several panels, partial row blocks, and weight panels
    laid out for tasks of 128 rows or more."""
    check_linear(linear_kernel, rows, width, outputs, True, activation, True, True, bf16_in, "float32", seed)


@needs_bf16
@needs_amx_kernels
@settings(max_examples=4, deadline=None)
@given(rows=st.integers(4090, 8300), bf16_in=st.booleans(), out=st.sampled_from(["float32", "bf16"]),
       seed=st.integers(0, 2**31 - 1))
def test_fused_linear_over_several_passes_of_rows(linear_kernel, rows, bf16_in, out, seed):
    """More rows than the fused kernel lays out at a time (4096): each pass writes its own rows."""
    check_linear(linear_kernel, rows, 64, 64, True, "silu", True, True, bf16_in, out, seed)


@settings(max_examples=15, deadline=None)
@given(rows=st.integers(1, 40), width=st.sampled_from([1, 24, 96]), outputs=st.sampled_from([1, 64, 300]),
       activation=st.sampled_from([None, "gelu_tanh", "silu"]), gated=st.booleans(), residual=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_float32_linear_is_a_float32_product(rows, width, outputs, activation, gated, residual, seed):
    """With float32 weights the product, post-ops included, is float32 throughout: within float32
    rounding of the float64 result, far inside what a bf16 rounding would give."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width), dtype=np.float32)
    weight = rng.standard_normal((outputs, width), dtype=np.float32)
    b = rng.standard_normal(outputs).astype(np.float32)
    gate = rng.standard_normal(outputs).astype(np.float32) if gated else None
    add = rng.standard_normal((rows, outputs)).astype(np.float32) if residual else None
    expected = torch.from_numpy(x.astype(np.float64) @ weight.T.astype(np.float64) + b)
    if activation is not None:
        expected = {"gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
                    "silu": torch.nn.functional.silu}[activation](expected)
    expected = expected.numpy() * (1.0 if gate is None else gate) + (0.0 if add is None else add)
    actual = onednn.linear(x, weight, b, activation, gate, add)
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * np.sqrt(width) * (1 + np.abs(expected).max()))


def attention_reference(query, key, value, mask):
    scores = np.einsum("bqhd,bkhd->bhqk", rounded(query), rounded(key))
    if mask is not None:
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
        scores = np.where(mask.any(axis=1)[:, None, None, None], scores, 0.0)  # no key at all: uniform
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs = rounded((probs / probs.sum(-1, keepdims=True)).astype(np.float32))  # bf16 into the second product
    return np.einsum("bhqk,bkhd->bqhd", probs, rounded(value))


@pytest.fixture(params=["onednn", "fused"])
def kernel(request, monkeypatch):
    """Which attention runs: oneDNN matmuls, or the compiled AMX kernel (where it can run). Returns
    its name and the list of calls the fused kernel took."""
    return request.param, spied(monkeypatch, request, "_fused_attention")


def check_attention(kernel, batch, queries, keys, heads, dim, masked, bounded, spread, seed):
    """With score bounds, heads bounded by ``EXP_SAFE`` take exp without a shift (``spread`` 1),
    the others (``spread`` 12 puts most bounds above it) the softmax; both give the softmax."""
    rng = np.random.default_rng(seed)
    query, key, value = (rng.standard_normal((batch, length, heads, dim), dtype=np.float32)
                         for length in (queries, keys, keys))
    query *= spread / np.sqrt(dim)
    mask = rng.random((batch, keys)) < 0.6 if masked else None
    bounds = None
    if bounded:
        bounds = (onednn.row_norm_maxima(query.reshape(batch, queries, -1), heads)
                  * onednn.row_norm_maxima(key.reshape(batch, keys, -1), heads))
        assert (np.abs(np.einsum("bqhd,bkhd->bhqk", query, key)).max(axis=(2, 3)) <= bounds * (1 + 1e-6)).all()
    expected = attention_reference(query, key, value, mask)
    actual = onednn.attention(query, key, value, mask, score_bounds=bounds)
    # each probability is rounded to bf16 (by 2^-9 at most, relatively) before or after its
    # normalization: the output moves by at most 2^-9 of the largest value, here allowed twice that
    np.testing.assert_allclose(actual, expected, atol=2.0 ** -8 * np.abs(value).max(), rtol=0)

    # bf16 operands in, into bf16 rows strided inside a wider array (as a single block writes it)
    wider = np.zeros((batch, queries, heads * dim + 3), np.uint16)
    into = wider[..., 1:1 + heads * dim]
    onednn.attention(*(narrow(a, "BF16") for a in (query, key, value)), mask, out=into)
    np.testing.assert_allclose(widened(into).reshape(expected.shape), expected, rtol=0,
                               atol=2.0 ** -8 * (np.abs(value).max() + np.abs(expected).max()))
    assert not wider[..., 0].any() and not wider[..., -2:].any()
    name, taken = kernel
    every_item_attends = mask is None or mask.any(axis=1).all()
    assert taken == ([every_item_attends] * 2 if name == "fused" else [])


@needs_bf16
@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 2), queries=st.integers(1, 20), keys=st.integers(1, 20), heads=st.integers(1, 3),
       dim=st.sampled_from([2, 8, 32]), masked=st.booleans(), bounded=st.booleans(),
       spread=st.sampled_from([1.0, 12.0]), seed=st.integers(0, 2**31 - 1))
def test_attention_equals_the_softmax_of_its_bf16_operands(monkeypatch, kernel, batch, queries, keys, heads, dim,
                                                           masked, bounded, spread, seed):
    kernel[1].clear()
    monkeypatch.setattr(onednn, "QUERY_BLOCK", 7)  # several query blocks per head
    check_attention(kernel, batch, queries, keys, heads, dim, masked, bounded, spread, seed)


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 2), queries=st.integers(1, 20), keys=st.integers(1, 600), heads=st.integers(1, 3),
       dim=st.sampled_from([2, 8, 32]), masked=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_exact_attention_is_the_float32_softmax(monkeypatch, batch, queries, keys, heads, dim, masked, seed):
    monkeypatch.setattr(onednn, "QUERY_BLOCK", 7)  # several query blocks per head
    rng = np.random.default_rng(seed)
    query, key, value = (rng.standard_normal((batch, length, heads, dim), dtype=np.float32)
                         for length in (queries, keys, keys))
    mask = rng.random((batch, keys)) < 0.6 if masked else None
    scores = np.einsum("bqhd,bkhd->bhqk", query.astype(np.float64), key.astype(np.float64))
    if mask is not None:
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
        scores = np.where(mask.any(axis=1)[:, None, None, None], scores, 0.0)  # no key at all: uniform
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    expected = np.einsum("bhqk,bkhd->bqhd", probs / probs.sum(-1, keepdims=True), value.astype(np.float64))
    actual = onednn.attention(query, key, value, mask, exact=True)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * np.sqrt(dim))


@needs_bf16
@needs_amx_kernels
@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 2), queries=st.integers(1, 80), keys=st.integers(200, 700), heads=st.integers(1, 2),
       dim=st.sampled_from([6, 64, 128, 130]), masked=st.booleans(), bounded=st.booleans(),
       spread=st.sampled_from([1.0, 12.0]), seed=st.integers(0, 2**31 - 1))
def test_fused_attention_over_several_key_steps(kernel, batch, queries, keys, heads, dim, masked, bounded, spread,
                                                seed):
    """Sequences longer than the fused kernel's step of 256 keys and its 32 queries per task: the
    running maxima and sums carry across steps, and the last step and task are partial."""
    kernel[1].clear()
    check_attention(kernel, batch, queries, keys, heads, dim, masked, bounded, spread, seed)


@needs_bf16
@settings(max_examples=10, deadline=None)
@given(keys=st.integers(300, 700), jump=st.sampled_from([10.0, 120.0]), at=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**31 - 1))
def test_attention_follows_a_maximum_that_jumps_in_a_later_step(kernel, keys, jump, at, seed):
    """One key past the first step scores ``jump`` above the rest for every query: within the fused
    kernel's slack (10) its probabilities grow past 1 and the shift stays; beyond it (120, where exp
    under the old shift would overflow float32) the rows are taken again with the new maximum and
    what they accumulated is rescaled."""
    kernel[1].clear()
    rng = np.random.default_rng(seed)
    heads, dim, queries = 2, 64, 40
    direction = rng.standard_normal((1, 1, heads, dim))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    query = (direction + 0.1 * rng.standard_normal((1, queries, heads, dim))).astype(np.float32)
    key = (0.3 * rng.standard_normal((1, keys, heads, dim))).astype(np.float32)
    key[0, 256 + int(at * (keys - 257))] = jump * direction[0, 0]
    value = rng.standard_normal((1, keys, heads, dim), dtype=np.float32)
    expected = attention_reference(query, key, value, None)
    actual = onednn.attention(query, key, value)
    np.testing.assert_allclose(actual, expected, atol=2.0 ** -8 * np.abs(value).max(), rtol=0)
    assert kernel[1] == ([True] if kernel[0] == "fused" else [])


@needs_bf16
@pytest.mark.skipif(not onednn.can_prepare_heads(), reason="the compiled helper is not built here")
@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), heads=st.integers(1, 3), dim=st.sampled_from([2, 6, 16, 34, 128]),
       normed=st.booleans(), rotated=st.booleans(), scale=st.sampled_from([1.0, 0.125]),
       seed=st.integers(0, 2**31 - 1))
def test_prepared_heads_are_normed_scaled_rotated_and_rounded(rows, heads, dim, normed, rotated, scale, seed):
    """``prepare_heads`` against numpy in float64: RMS norm with its weight, scale, the rotary
    embedding (``x * cos + pairs_swapped(x) * sin``), each head's largest row norm; read from and
    written into rows strided inside wider arrays."""
    rng = np.random.default_rng(seed)
    width = heads * dim
    source = rng.standard_normal((rows, width + 5), dtype=np.float32) * 3
    x = source[:, 2:2 + width]
    weight = rng.uniform(0.5, 1.5, dim).astype(np.float32) if normed else None
    angles = rng.uniform(0, 6.3, (rows, dim // 2))
    cos = np.repeat(np.cos(angles), 2, axis=1).astype(np.float32) if rotated else None
    signs = np.tile([-1.0, 1.0], dim // 2)  # the pair signs ride in sin
    sin = (np.repeat(np.sin(angles), 2, axis=1) * signs).astype(np.float32) if rotated else None
    wider = np.zeros((rows, width + 3), np.uint16)
    maxima = np.zeros(heads, np.float32)
    onednn.prepare_heads(x, heads, wider[:, 1:1 + width], maxima, weight, 1e-6, scale, cos, sin)

    expected = x.astype(np.float64).reshape(rows, heads, dim)
    if normed:
        expected = expected / np.sqrt(np.mean(expected ** 2, axis=-1, keepdims=True) + 1e-6) * weight
    expected = expected * scale
    if rotated:
        swapped = expected.reshape(rows, heads, dim // 2, 2)[..., ::-1].reshape(rows, heads, dim)
        expected = expected * cos[:, None] + swapped * sin[:, None]
    actual = widened(wider[:, 1:1 + width]).reshape(rows, heads, dim)
    np.testing.assert_allclose(actual, expected, rtol=2.0 ** -8, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(maxima, np.linalg.norm(expected, axis=-1).max(axis=0), rtol=1e-5)
    assert not wider[:, 0].any() and not wider[:, -2:].any()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The same tiny transformer saved in float32, bfloat16 and float16."""
    folders = {}
    for dtype in ("float32", "bfloat16", "float16"):
        folders[dtype] = tmp_path_factory.mktemp(dtype)
        reference_model(tiny(), 5).to(getattr(torch, dtype)).save_pretrained(folders[dtype])
    return folders


def paths(backbone) -> set[str | bool]:
    """The paths the backbone's linear layers take: ``"bf16"`` or ``"f32"`` on oneDNN, False on MindSpore's ops."""
    return {cell.onednn_path for _, cell in backbone.network.cells_and_names() if isinstance(cell, Linear)}


@needs_bf16
def test_auto_computes_16_bit_weights_in_bf16_and_float32_weights_in_float32(folders):
    assert paths(load(folders["bfloat16"])) == {"bf16"}
    assert paths(load(folders["float16"])) == {"bf16"}
    assert paths(load(folders["float32"])) == {"f32"}
    assert paths(load(folders["float32"], compute_dtype="bfloat16")) == {"bf16"}
    assert paths(load(folders["bfloat16"], compute_dtype="float32")) == {"f32"}


def test_float32_runs_on_mindspores_ops_when_onednn_is_turned_off(folders, monkeypatch):
    monkeypatch.setenv("HUNYUAN_ZOO_CPU_ONEDNN", "0")
    assert paths(load(folders["float32"])) == {False}


@needs_bf16
def test_bf16_transformer_stays_close_to_diffusers_float32(folders):
    config = tiny()
    args = inputs(config, 1)
    expected = reference_output(reference_model(config, 5).float(), config, *args)
    actual = call(load(folders["float32"], compute_dtype="bfloat16"), config, *args)
    assert np.abs(actual - expected).max() <= 2e-2 * max(1.0, float(np.abs(expected).max()))


def test_without_bf16_instructions_it_says_so_once_and_computes_in_float32(folders, monkeypatch, capsys):
    monkeypatch.setenv("HUNYUAN_ZOO_CPU_BF16", "0")
    monkeypatch.setattr(runtime, "_NOTICES", set())
    onednn.bf16_unavailable.cache_clear()
    try:
        first, second = (load(folders["bfloat16"], compute_dtype="bfloat16") for _ in range(2))
        notice = capsys.readouterr().err.strip().splitlines()
        assert notice == ["hunyuanvideo-transformer: computing in float32, not bf16: turned off by "
                          "HUNYUAN_ZOO_CPU_BF16=0"]
        assert paths(first) == {"f32"}
        args = inputs(tiny(), 2)
        np.testing.assert_array_equal(call(second, tiny(), *args),
                                      call(load(folders["bfloat16"], compute_dtype="float32"), tiny(), *args))
    finally:
        monkeypatch.undo()
        onednn.bf16_unavailable.cache_clear()


@pytest.mark.parametrize("cap, dropped", [("AVX2", {"avx512f", "avx512_bf16", "amx_bf16", "amx_int8"}),
                                          ("avx512_core_bf16", {"amx_bf16", "amx_int8"}), ("AVX512_CORE_AMX", set()),
                                          ("NOT_AN_ISA", set())])
def test_onednns_instruction_set_cap_holds_our_kernels_too(monkeypatch, cap, dropped):
    every = onednn._flags_of_cpu()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    onednn._cpu_flags.cache_clear()
    onednn.bf16_unavailable.cache_clear()
    try:
        assert onednn._cpu_flags() == every - dropped
        if cap == "AVX2":
            assert not onednn._has_amx()
            held = "ONEDNN_MAX_CPU_ISA=AVX2 holds back AVX512_BF16 and AMX-BF16"
            assert onednn.bf16_unavailable() in (held, "this CPU has neither AVX512_BF16 nor AMX-BF16 instructions")
            assert (onednn.bf16_unavailable() == held) == bool(every & {"avx512_bf16", "amx_bf16"})
    finally:
        monkeypatch.undo()
        onednn._cpu_flags.cache_clear()
        onednn.bf16_unavailable.cache_clear()


@needs_bf16
def test_without_the_compiled_helpers_it_says_so_once(folders, monkeypatch, capsys):
    monkeypatch.setattr(runtime, "_NOTICES", set())
    monkeypatch.setattr(native, "missing", lambda: "it was not built at install")
    first, second = (load(folders["bfloat16"], compute_dtype="bfloat16") for _ in range(2))
    assert capsys.readouterr().err.strip().splitlines() == [
        "hunyuanvideo-transformer: bf16 without the compiled thread pool and kernels (slower): "
        "it was not built at install"]
    assert paths(first) == paths(second) == {"bf16"}


def test_a_linear_layer_applies_its_activation_after_the_bias():
    """The float32 path, as diffusers' FeedForward: ``activation(x @ W.T + b)``, to the fp32 parity
    tolerance (MindSpore's GELU and PyTorch's differ by up to 2e-5 on random weights)."""
    layer = Linear(4, 3, activation="gelu_tanh")
    x = np.linspace(-3, 3, 8, dtype=np.float32).reshape(2, 4)
    expected = torch.nn.functional.gelu(
        torch.nn.functional.linear(torch.from_numpy(x), torch.from_numpy(layer.weight.asnumpy()),
                                   torch.from_numpy(layer.bias.asnumpy())), approximate="tanh")
    np.testing.assert_allclose(layer(ms.Tensor(x)).asnumpy(), expected.numpy(), rtol=1e-5, atol=1e-4)


@needs_bf16
@pytest.mark.parametrize("stored", ["bfloat16", "float16"])
def test_llama_in_bf16_stays_close_to_transformers_float32(tmp_path, stored):
    batch = ["a cat walks on the grass", "dog"]
    model = randomized(LlamaModel(llama_config()), seed=7).to(getattr(torch, stored))
    model.save_pretrained(tmp_path / "text_encoder")
    llama_tokenizer().save_pretrained(tmp_path / "tokenizer")
    reference = LlamaModel.from_pretrained(tmp_path / "text_encoder", dtype=torch.float32)
    with torch.no_grad():
        hidden, mask = (t.numpy() for t in reference_pipeline(reference, None, llama_tokenizer(), None)
                        ._get_llama_prompt_embeds(batch, TEMPLATE, device="cpu", max_sequence_length=8))
    encoder = zoo.load_component("encoder", "hunyuanvideo-llama", weights=tmp_path, prompt_template=TEMPLATE,
                                 max_sequence_length=8)  # auto: 16-bit weights, bf16 matmuls
    assert {cell.onednn_path for _, cell in encoder.model.cells_and_names() if isinstance(cell, Linear)} == {"bf16"}
    mask = mask.astype(bool)
    actual = encoder.encode(batch).hidden_states[mask]
    assert np.abs(actual - hidden[mask]).max() <= 2e-2 * max(1.0, float(np.abs(hidden[mask]).max()))


@needs_bf16
@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 600), width=st.integers(2, 64), affine=st.sampled_from(["none", "scale", "both"]),
       centre=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_norms_on_the_onednn_path_equal_pytorchs(rows, width, affine, centre, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width), dtype=np.float32) * 3 + 1
    weight = rng.standard_normal(width).astype(np.float32) if affine != "none" else None
    bias = rng.standard_normal(width).astype(np.float32) if affine == "both" else None
    tx = torch.from_numpy(x).double()
    if centre:
        expected = torch.nn.functional.layer_norm(tx, (width,), eps=1e-6)
    else:
        expected = tx * torch.rsqrt(tx.pow(2).mean(-1, keepdim=True) + 1e-6)
    if weight is not None:
        expected = expected * torch.from_numpy(weight).double()
    if bias is not None:
        expected = expected + torch.from_numpy(bias).double()
    actual = onednn.normalize(x, 1e-6, weight, bias, centre)
    np.testing.assert_allclose(actual, expected.numpy(), atol=2e-5, rtol=1e-5)
    into = np.empty((rows, width), np.uint16)
    onednn.normalize(x, 1e-6, weight, bias, centre, out=into)
    np.testing.assert_allclose(widened(into), expected.numpy(), atol=2e-5, rtol=2.0 ** -8)
    onednn.normalize(x, 1e-6, weight, bias, centre, out=x)  # in place
    np.testing.assert_allclose(x, expected.numpy(), atol=2e-5, rtol=1e-5)
