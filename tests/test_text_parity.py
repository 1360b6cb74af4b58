"""The text encoders against transformers' ``LlamaModel``/``CLIPTextModel`` and diffusers'
``HunyuanVideoPipeline.encode_prompt``, with identical random weights."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from mindspore import Tensor
from safetensors.torch import save_file
from transformers import CLIPTextModel, LlamaModel

import zoo
from plugins.common.weights import load_weights
from plugins.hunyuanvideo_text.clip import ACTIVATIONS, CLIPTextTransformer, pooled_positions
from plugins.hunyuanvideo_text.llama import LlamaModel as MsLlamaModel
from plugins.hunyuanvideo_text.llama_encoder import attention_mask
from tests.text_fixtures import (
    TEMPLATE,
    clip_config,
    clip_tokenizer,
    llama_config,
    llama_tokenizer,
    prompts,
    randomized,
    reference_models,
    reference_pipeline,
    save_pipeline,
)

seeds = st.integers(0, 2**16)


@st.composite
def llama_configs(draw):
    kv_heads = draw(st.sampled_from([1, 2]))
    heads = kv_heads * draw(st.sampled_from([1, 2, 3]))
    return llama_config(
        num_hidden_layers=draw(st.integers(2, 4)),
        num_key_value_heads=kv_heads,
        num_attention_heads=heads,
        hidden_size=heads * draw(st.sampled_from([2, 4, 6])),
        head_dim=draw(st.sampled_from([2, 4, 8])),  # need not be hidden_size / heads
        intermediate_size=draw(st.integers(4, 40)),
        rope_parameters={"rope_type": "default", "rope_theta": draw(st.sampled_from([10000.0, 500000.0]))},
        attention_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        rms_norm_eps=draw(st.sampled_from([1e-6, 1e-5])),
    )


@st.composite
def clip_configs(draw):
    heads = draw(st.sampled_from([1, 2, 4]))
    legacy_eos = draw(st.booleans())  # eos_token_id 2: pooled at the highest id, as CLIP-L's config has it
    return clip_config(
        num_hidden_layers=draw(st.integers(1, 3)),
        num_attention_heads=heads,
        hidden_size=heads * draw(st.sampled_from([2, 4, 8])),
        intermediate_size=draw(st.integers(4, 40)),
        hidden_act=draw(st.sampled_from(sorted(ACTIVATIONS))),
        layer_norm_eps=draw(st.sampled_from([1e-5, 1e-6])),
        **({"eos_token_id": 2} if legacy_eos else {}),
    )


def assert_close(ours: np.ndarray, reference: np.ndarray, what: str) -> None:
    """Equal within 1e-4 of the reference's scale."""
    scale = max(float(np.abs(reference).max(initial=0.0)), 1.0)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4 * scale, err_msg=what)


def padded_mask(lengths: list[int], width: int, left: bool) -> np.ndarray:
    positions = np.arange(width)[None, :]
    lengths = np.array(lengths)[:, None]
    return positions >= width - lengths if left else positions < lengths


@given(llama_configs(), st.data(), st.booleans(), st.booleans(), seeds)
def test_llama_model_matches_transformers_at_every_hidden_state(config, data, left, sharded, seed):
    batch, width = data.draw(st.integers(1, 3), label="batch"), data.draw(st.integers(1, 20), label="length")
    lengths = data.draw(st.lists(st.integers(1, width), min_size=batch, max_size=batch), label="lengths")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.vocab_size, (batch, width)).astype(np.int32)
    mask = padded_mask(lengths, width, left)
    reference = randomized(LlamaModel(config), seed)
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids).long(), output_hidden_states=True,
                             attention_mask=torch.from_numpy(mask).long()).hidden_states
    ours = MsLlamaModel(config)
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder, **({"max_shard_size": "20KB"} if sharded else {}))
        load_weights(ours, folder)
    for index, hidden in enumerate(expected):
        got = ours(Tensor(ids), Tensor(attention_mask(mask)), index).asnumpy()
        assert_close(got[mask], hidden.numpy()[mask], f"hidden_states[{index}] at unmasked positions")


@given(clip_configs(), st.integers(1, 3), st.integers(1, 77), seeds)
def test_clip_model_matches_transformers(config, batch, width, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, config.vocab_size, (batch, width))
    ids[np.arange(batch), rng.integers(0, width, batch)] = config.vocab_size - 1  # an end-of-text token
    reference = randomized(CLIPTextModel(config), seed)
    with torch.no_grad():
        expected = reference(input_ids=torch.from_numpy(ids).long())
    ours = CLIPTextTransformer(config)
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        load_weights(ours, folder)
    hidden = ours(Tensor(ids.astype(np.int32))).asnumpy()
    assert_close(hidden, expected.last_hidden_state.numpy(), "last hidden state")
    pooled = hidden[np.arange(batch), pooled_positions(ids, config.eos_token_id)]
    assert_close(pooled, expected.pooler_output.numpy(), "pooled output")


@given(llama_configs(), clip_configs(), st.lists(prompts(), min_size=1, max_size=3), st.integers(1, 16),
       st.booleans(), st.booleans(), st.sampled_from(["options", "call"]), st.booleans(), seeds)
def test_encoder_matches_diffusers_encode_prompt(llama, clip, batch, max_length, count_crop, left, how,
                                                 sharded, seed):
    template = {**TEMPLATE, "crop_start": None if count_crop else TEMPLATE["crop_start"]}
    tokenizer, tokenizer_2 = llama_tokenizer("left" if left else "right"), clip_tokenizer()
    llama_model, clip_model = reference_models(llama, clip, seed)
    pipe = reference_pipeline(llama_model, clip_model, tokenizer, tokenizer_2)
    with torch.no_grad():
        hidden, pooled, mask = (t.numpy() for t in pipe.encode_prompt(
            batch, prompt_template=template, max_sequence_length=max_length, device="cpu"))
    per_call = {"prompt_template": template, "max_sequence_length": max_length}
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # over-long prompts warn; test_text_contract checks that
        save_pipeline(Path(folder), llama_model, clip_model, tokenizer, tokenizer_2, sharded)
        encoder = zoo.load_component("encoder", "hunyuanvideo-text", weights=folder,
                                     **(per_call if how == "options" else {}))
        text = encoder.encode(batch, **(per_call if how == "call" else {}))
    mask = mask.astype(bool)
    assert np.array_equal(text.attention_mask, mask), "attention masks differ"
    assert text.hidden_states.shape == hidden.shape
    assert_close(text.hidden_states[mask], hidden[mask], "LLaMA hidden states at unmasked positions")
    assert_close(text.pooled, pooled, "CLIP pooled embeddings")


def test_clip_half_reads_transformers_4_names():
    """transformers 4 saved ``CLIPTextModel`` parameters under ``text_model.``, as the published
    HunyuanVideo checkpoint has them."""
    batch = ["a cat walks on the grass", "", "dog"]
    model = randomized(CLIPTextModel(clip_config(eos_token_id=2)), seed=5)
    tokenizer = clip_tokenizer()
    pipe = reference_pipeline(None, model, None, tokenizer)
    with torch.no_grad():
        expected = pipe._get_clip_prompt_embeds(batch, device="cpu").numpy()
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = Path(folder)
        model.save_pretrained(root / "text_encoder_2")
        state = {f"text_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
        (root / "text_encoder_2" / "model.safetensors").unlink()
        save_file(state, root / "text_encoder_2" / "model.safetensors")
        tokenizer.save_pretrained(root / "tokenizer_2")
        text = zoo.load_component("encoder", "hunyuanvideo-clip", weights=root).encode(batch)
    assert_close(text.pooled, expected, "pooled embeddings from a text_model.-prefixed checkpoint")


@pytest.mark.parametrize("weight_dtype", ["bfloat16", "float16"])
def test_narrow_weight_storage_computes_in_float32(weight_dtype, tmp_path):
    """A half-precision checkpoint kept in half precision (the 8B model's memory halved) gives
    what transformers gives in float32 from the same values."""
    batch = ["a cat walks on the grass", "dog"]
    model = randomized(LlamaModel(llama_config()), seed=7).to(getattr(torch, weight_dtype))
    model.save_pretrained(tmp_path / "text_encoder")
    tokenizer = llama_tokenizer()
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    reference = LlamaModel.from_pretrained(tmp_path / "text_encoder", dtype=torch.float32)
    pipe = reference_pipeline(reference, None, tokenizer, None)
    with torch.no_grad():
        hidden, mask = (t.numpy() for t in pipe._get_llama_prompt_embeds(
            batch, TEMPLATE, device="cpu", max_sequence_length=8))
    encoder = zoo.load_component("encoder", "hunyuanvideo-llama", weights=tmp_path, weight_dtype=weight_dtype,
                                 compute_dtype="float32", prompt_template=TEMPLATE, max_sequence_length=8)
    text = encoder.encode(batch)
    mask = mask.astype(bool)
    assert np.array_equal(text.attention_mask, mask)
    assert_close(text.hidden_states[mask], hidden[mask], f"hidden states from {weight_dtype} storage")
