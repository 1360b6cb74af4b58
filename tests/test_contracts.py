"""Data at a boundary, pipeline specs and contract versions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    ContractError,
    PipelineSpec,
    Schedule,
    TextEmbeddings,
    check_images,
    check_latents,
    check_video,
)
from contracts.version import is_compatible

SPEC = {"encoder": "hunyuanvideo-text", "backbone": "hunyuanvideo-transformer",
        "autoencoder": "hunyuanvideo-vae", "scheduler": "flow-match-euler"}


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5))
def test_text_embeddings_accept_consistent_arrays(batch, length, width):
    text = TextEmbeddings(hidden_states=np.zeros((batch, length, width), np.float64),
                          attention_mask=np.ones((batch, length), np.int64),
                          pooled=np.zeros((batch, 4), np.float32))
    assert text.hidden_states.dtype == np.float32 and text.attention_mask.dtype == bool
    assert text.batch_size == batch
    both = TextEmbeddings.concat([text, text])
    assert both.batch_size == 2 * batch and both.select([0]).hidden_states.shape == (1, length, width)


def test_text_embeddings_name_the_wrong_field_and_layout():
    with pytest.raises(ValidationError, match=r"hidden_states: expected \[B, L, D\] \(3 dims\), got shape \(2, 3\)"):
        TextEmbeddings(hidden_states=np.zeros((2, 3)), attention_mask=np.ones((2, 3)))
    with pytest.raises(ValidationError, match=r"attention_mask: expected \[B, L\] = \(2, 3\)"):
        TextEmbeddings(hidden_states=np.zeros((2, 3, 4)), attention_mask=np.ones((2, 4)))
    with pytest.raises(ValidationError, match="pooled: expected batch 2"):
        TextEmbeddings(hidden_states=np.zeros((2, 3, 4)), attention_mask=np.ones((2, 3)),
                       pooled=np.zeros((1, 4)))
    with pytest.raises(ValidationError, match="hidden_states: expected numbers"):
        TextEmbeddings(hidden_states=np.array([[["a"]]]), attention_mask=np.ones((1, 1)))


def test_schedule_needs_one_more_sigma_than_timesteps():
    assert len(Schedule(timesteps=[1000, 500], sigmas=[1, 0.5, 0])) == 2
    with pytest.raises(ValidationError, match="sigmas: expected N \\+ 1 = 3 values for 2 timesteps, got 2"):
        Schedule(timesteps=[1000, 500], sigmas=[1, 0.5])


def test_video_and_latent_layouts():
    assert check_video(np.zeros((1, 3, 5, 8, 8))).dtype == np.float32
    with pytest.raises(ContractError, match=r"expected 3 colour channels .* got shape \(1, 4, 5, 8, 8\)"):
        check_video(np.zeros((1, 4, 5, 8, 8)))
    with pytest.raises(ContractError, match=r"latents: expected 16 channels"):
        check_latents(np.zeros((1, 8, 2, 4, 4)), channels=16)


def test_pipeline_spec_from_dict_json_and_toml(tmp_path):
    spec = PipelineSpec.model_validate(SPEC)
    assert spec.scheduler.name == "flow-match-euler" and spec.scheduler.options == {}
    assert PipelineSpec.from_json(spec.model_dump_json()) == spec
    toml = tmp_path / "spec.toml"
    toml.write_text('encoder = "hunyuanvideo-text"\nbackbone = "hunyuanvideo-transformer"\n'
                    'autoencoder = "hunyuanvideo-vae"\n'
                    '[scheduler]\nname = "flow-match-heun"\noptions = { shift = 5.0 }\n')
    loaded = PipelineSpec.load(toml)
    assert loaded.scheduler.name == "flow-match-heun" and loaded.scheduler.options == {"shift": 5.0}
    assert loaded == spec.replace(scheduler={"name": "flow-match-heun", "options": {"shift": 5.0}})


def test_pipeline_spec_names_a_missing_kind_and_unknown_keys():
    with pytest.raises(ValidationError, match="scheduler"):
        PipelineSpec.model_validate({k: v for k, v in SPEC.items() if k != "scheduler"})
    with pytest.raises(ValidationError, match="vocoder"):
        PipelineSpec.model_validate({**SPEC, "vocoder": "x"})


@pytest.mark.parametrize(("plugin", "ours", "ok"), [
    ("1.0", "1.0", True), ("1.0", "1.3", True), ("1.4", "1.3", False), ("2.0", "1.0", False),
    ("0.9", "1.0", False),
])
def test_contract_versions(plugin, ours, ok):
    assert is_compatible(plugin, ours) is ok


def test_a_malformed_contract_version_is_named():
    with pytest.raises(ValueError, match="'one' is not of the form 'MAJOR.MINOR'"):
        is_compatible("one")


def test_images_are_8_bit_rgb_and_say_what_they_got():
    assert check_images(np.zeros((2, 5, 7, 3), np.uint8)).shape == (2, 5, 7, 3)
    with pytest.raises(ContractError, match=r"images: expected RGB images \[B, H, W, 3\], got shape \(1, 4, 4, 4\)"):
        check_images(np.zeros((1, 4, 4, 4), np.uint8))
    with pytest.raises(ContractError, match="expected 8-bit pixels"):
        check_images(np.zeros((1, 4, 4, 3), np.uint16))
