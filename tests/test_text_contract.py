"""The encoder contract on the text encoders, and how they treat bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from safetensors.torch import save_file

import zoo
from plugins.common.checkpoint import CheckpointError
from plugins.hunyuanvideo_text.config import DEFAULT_CROP_START, DEFAULT_TEMPLATE
from registry import ComponentOptionsError
from tests.text_fixtures import (
    TEMPLATE,
    clip_config,
    clip_tokenizer,
    llama_config,
    llama_tokenizer,
    reference_models,
    save_pipeline,
)
from zoo.testkit import properties

OPTIONS = {"prompt_template": TEMPLATE, "max_sequence_length": 12}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    llama, clip = reference_models(llama_config(), clip_config(), seed=3)
    folder = tmp_path_factory.mktemp("pipeline")
    return save_pipeline(folder, llama, clip, llama_tokenizer(), clip_tokenizer())


@pytest.fixture(scope="module")
def encoder(pipeline):
    return zoo.load_component("encoder", "hunyuanvideo-text", weights=pipeline, **OPTIONS)


@pytest.mark.parametrize("prop", properties("encoder"), ids=lambda p: p.id)
def test_contract(prop, pipeline):
    prop.check(lambda: zoo.load_component("encoder", "hunyuanvideo-text", weights=pipeline, **OPTIONS))


def test_composite_is_its_halves(encoder, pipeline):
    """Each half is an encoder alone; the composite takes hidden states and mask from the LLaMA
    half and the pooled embedding from the CLIP half."""
    batch = ["a cat walks on the grass", "", "dog"]
    llm = zoo.load_component("encoder", "hunyuanvideo-llama", weights=pipeline, **OPTIONS).encode(batch)
    clip = zoo.load_component("encoder", "hunyuanvideo-clip", weights=pipeline).encode(batch)
    text = encoder.encode(batch)
    assert llm.pooled is None and llm.hidden_states.shape == (3, 12, 16)
    assert clip.hidden_states.shape == (3, 77, 16) and clip.pooled.shape == (3, 16)
    assert clip.attention_mask.sum(-1).tolist() == [12, 2, 3]  # start, 1+1+5+1+1+1 word pieces, end
    assert np.array_equal(text.hidden_states, llm.hidden_states)
    assert np.array_equal(text.attention_mask, llm.attention_mask)
    assert np.array_equal(text.pooled, clip.pooled)


def test_default_template_is_hunyuanvideos():
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE

    assert DEFAULT_TEMPLATE == DEFAULT_PROMPT_TEMPLATE["template"]
    assert DEFAULT_CROP_START == DEFAULT_PROMPT_TEMPLATE["crop_start"] == 95


@pytest.mark.parametrize("prompts", [5, None, [], ["a cat", 3], b"a cat", {"a": 1}])
def test_non_string_prompts_are_refused(encoder, prompts):
    with pytest.raises(ValueError, match="prompts: expected"):
        encoder.encode(prompts)


def test_empty_prompt_has_the_closing_token(encoder):
    text = encoder.encode("")
    assert text.attention_mask.sum() == 1  # the template's <|eot_id|>
    assert np.isfinite(text.hidden_states).all() and np.isfinite(text.pooled).all()


def test_over_long_prompt_is_truncated_with_a_warning(encoder):
    long = "a cat walks on the grass " * 20
    with pytest.warns(UserWarning, match="truncated") as record:
        text = encoder.encode([long, "a dog"])
    assert {"hunyuanvideo-llama", "hunyuanvideo-clip"} <= {str(w.message).split(":")[0] for w in record}
    assert text.attention_mask[0].all() and text.hidden_states.shape[1] == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode("a dog")  # no warning when nothing is cut


@pytest.mark.parametrize("template", [{"crop_start": 3}, {"template": "no placeholder"},
                                      {"template": "{} and {name}"}, "{", 7,
                                      {"template": "{}", "crop_start": -1}])
def test_bad_templates_are_refused(encoder, template):
    with pytest.raises(ValueError, match="prompt_template"):
        encoder.encode("a cat", prompt_template=template)


@pytest.mark.parametrize("length", [0, -3, 2.5])
def test_bad_max_sequence_length_is_refused(encoder, length):
    with pytest.raises(ValueError, match="max_sequence_length"):
        encoder.encode("a cat", max_sequence_length=length)


def test_per_call_overrides(encoder):
    text = encoder.encode("a cat", prompt_template="{}", max_sequence_length=5)
    # crop_start counted as diffusers counts it: two template tokens (<|begin_of_text|> and '{}') less two
    assert text.hidden_states.shape[1] == 5
    assert text.attention_mask[0].tolist() == [True, True, True, False, False]


def test_random_build_needs_a_tokenizer_and_an_architecture():
    with pytest.raises(ValueError, match="tokenizer.*text_config"):
        zoo.load_component("encoder", "hunyuanvideo-text")
    with pytest.raises(ValueError, match="text_config"):
        zoo.load_component("encoder", "hunyuanvideo-llama", tokenizer="somewhere")


def test_random_build_is_seeded(tmp_path):
    llama_tokenizer().save_pretrained(tmp_path / "tok")
    clip_tokenizer().save_pretrained(tmp_path / "tok2")
    llama_fields = {k: v for k, v in llama_config().to_dict().items() if not k.startswith("_")}
    clip_fields = {k: v for k, v in clip_config().to_dict().items() if not k.startswith("_")}

    def build(seed):
        return zoo.load_component(
            "encoder", "hunyuanvideo-text", prompt_template=TEMPLATE, max_sequence_length=6,
            llm_options={"tokenizer": tmp_path / "tok", "text_config": llama_fields, "seed": seed},
            clip_options={"tokenizer": tmp_path / "tok2", "text_config": clip_fields, "seed": seed})

    a, b, c = (build(seed).encode("a cat") for seed in (0, 0, 1))
    assert np.array_equal(a.hidden_states, b.hidden_states) and np.array_equal(a.pooled, b.pooled)
    assert not np.allclose(a.hidden_states, c.hidden_states)
    assert a.hidden_states.shape == (1, 6, 16) and a.pooled.shape == (1, 16)


def test_unknown_options_and_halves_are_named(pipeline):
    with pytest.raises(ComponentOptionsError, match="prompt_templat"):
        zoo.load_component("encoder", "hunyuanvideo-llama", weights=pipeline, prompt_templat="{}")
    with pytest.raises(LookupError, match="hunyuanvideo-clip"):
        zoo.load_component("encoder", "hunyuanvideo-text", weights=pipeline, clip="hunyuanvideo-clips")


def test_text_config_with_weights_is_refused(pipeline):
    with pytest.raises(ValueError, match="text_config"):
        zoo.load_component("encoder", "hunyuanvideo-clip", weights=pipeline, text_config={"hidden_size": 8})


def test_missing_subfolder_is_named(tmp_path):
    (tmp_path / "text_encoder").mkdir()
    with pytest.raises(CheckpointError, match="text_encoder_2"):
        zoo.load_component("encoder", "hunyuanvideo-clip", weights=tmp_path)


def test_mismatched_tokenizer_is_refused(tmp_path):
    llama, clip = reference_models(llama_config(vocab_size=10), clip_config(), seed=0)
    folder = save_pipeline(tmp_path, llama, clip, llama_tokenizer(), clip_tokenizer())
    encoder = zoo.load_component("encoder", "hunyuanvideo-llama", weights=folder, prompt_template=TEMPLATE)
    with pytest.raises(ValueError, match="outside the model's vocabulary of 10"):
        encoder.encode("a cat")


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    llama, clip = reference_models(llama_config(), clip_config(), seed=0)
    folder = save_pipeline(tmp_path, llama, clip, llama_tokenizer(), clip_tokenizer())
    state = {k: v for k, v in llama.state_dict().items() if k != "norm.weight"}
    (folder / "text_encoder" / "model.safetensors").unlink()
    save_file(state, folder / "text_encoder" / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing.*norm.weight"):
        zoo.load_component("encoder", "hunyuanvideo-llama", weights=folder)
