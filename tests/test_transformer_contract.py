"""The backbone contract kit on ``hunyuanvideo-transformer``, and its errors on bad input."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel

import zoo
import zoo.testkit.backbone  # noqa: F401 - registers the backbone properties
from contracts import ContractError, TextEmbeddings
from plugins.common.checkpoint import CheckpointError
from plugins.common.options import OWN_OPTIONS
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer
from plugins.hunyuanvideo_transformer.config import HunyuanVideoTransformerConfig
from zoo.testkit.core import PROPERTIES

TINY = dict(in_channels=3, out_channels=3, num_attention_heads=2, attention_head_dim=8, num_layers=1,
            num_single_layers=1, num_refiner_layers=1, mlp_ratio=2.0, patch_size=2, patch_size_t=1,
            text_embed_dim=6, pooled_projection_dim=5, rope_axes_dim=(2, 2, 4))


def tiny_backbone(**options):
    return zoo.load_component("backbone", "hunyuanvideo-transformer", **{**TINY, **options})


@pytest.mark.parametrize("prop", PROPERTIES["backbone"], ids=lambda p: p.id)
def test_contract_property(prop):
    prop.check(tiny_backbone)


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


def inputs(batch=1, channels=3, frames=2, height=4, width=4, length=3, text_dim=6, pooled_dim=5):
    rng = np.random.default_rng(0)
    text = TextEmbeddings(hidden_states=rng.standard_normal((batch, length, text_dim)),
                          attention_mask=np.ones((batch, length), bool),
                          pooled=None if pooled_dim is None else rng.standard_normal((batch, pooled_dim)))
    return rng.standard_normal((batch, channels, frames, height, width)).astype(np.float32), text


def test_good_input_runs(backbone):
    assert isinstance(backbone, HunyuanVideoTransformer)
    latents, text = inputs()
    assert backbone(latents, 500.0, text, guidance=6.0).shape == latents.shape


@pytest.mark.parametrize(("shape", "expected"), [
    (dict(height=5), "divisible by patch_size=2"),
    (dict(width=3), "divisible by patch_size=2"),
    (dict(channels=4), "expected 3 channels"),
    (dict(text_dim=7), "text_embed_dim=6"),
    (dict(pooled_dim=4), r"expected [B, 5]"),
    (dict(pooled_dim=None), r"expected [B, 5]"),
])
def test_bad_shapes_name_what_was_expected(backbone, shape, expected):
    latents, text = inputs(**shape)
    with pytest.raises(ContractError, match=expected.replace("[", r"\[")):
        backbone(latents, 500.0, text, guidance=6.0)


def test_temporal_patch_must_divide_frames():
    latents, text = inputs(frames=3)
    with pytest.raises(ContractError, match="divisible by patch_size_t=2"):
        tiny_backbone(patch_size_t=2)(latents, 500.0, text, guidance=6.0)


def test_bad_call_arguments(backbone):
    latents, text = inputs(batch=2)
    with pytest.raises(ContractError, match="guidance-distilled"):
        backbone(latents, 500.0, text)
    with pytest.raises(ContractError, match="timestep: expected a scalar or"):
        backbone(latents, np.zeros(3), text, guidance=6.0)
    with pytest.raises(ContractError, match="expected batch 2"):
        backbone(latents, 500.0, text.select([0]), guidance=6.0)
    with pytest.raises(ContractError, match="expected TextEmbeddings"):
        backbone(latents, 500.0, text.hidden_states, guidance=6.0)
    empty = TextEmbeddings(hidden_states=text.hidden_states, attention_mask=np.array([[1, 0, 0], [0, 0, 0]]),
                           pooled=text.pooled)
    with pytest.raises(ContractError, match="at least one real token"):
        backbone(latents, 500.0, empty, guidance=6.0)


def test_guidance_is_ignored_without_guidance_embedding():
    model = tiny_backbone(guidance_embeds=False)
    latents, text = inputs()
    assert np.array_equal(model(latents, 500.0, text), model(latents, 500.0, text, guidance=6.0))


@pytest.mark.parametrize(("options", "expected"), [
    (dict(rope_axes_dim=(2, 2, 2)), "summing to attention_head_dim"),
    (dict(rope_axes_dim=(3, 1, 4)), "positive even"),
    (dict(out_channels=4), r"in_channels \(3\) must be 4 or 8 for out_channels 4"),
    (dict(image_condition_type="pixel_concat"), "image_condition_type"),
    (dict(num_layer=3), "did you mean 'num_layers'"),
    (dict(weight_dtype="float64"), "weight_dtype"),
])
def test_bad_options_are_refused_by_name(options, expected):
    with pytest.raises(zoo.ComponentOptionsError, match=expected):
        tiny_backbone(**options)


def test_checkpoint_that_does_not_fit_lists_every_problem(tmp_path):
    HunyuanVideoTransformer3DModel(**{**TINY, "num_layers": 2, "guidance_embeds": False}).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError) as error:
        zoo.load_component("backbone", "hunyuanvideo-transformer", weights=tmp_path,
                           num_layers=1, guidance_embeds=True, text_embed_dim=7)
    message = str(error.value)
    assert "missing (4): time_text_embed.guidance_embedder.linear_1.bias" in message
    assert "unexpected (32)" in message and "transformer_blocks.1.attn.add_k_proj.bias" in message
    assert "mis-shaped (2)" in message
    assert "context_embedder.proj_in.weight: checkpoint (16, 6), HunyuanVideo transformer (16, 7)" in message


def test_pickled_weights_are_refused(tmp_path):
    model = HunyuanVideoTransformer3DModel(**TINY)
    model.save_config(tmp_path)
    torch.save(model.state_dict(), tmp_path / "diffusion_pytorch_model.bin")
    with pytest.raises(CheckpointError, match="only safetensors are read"):
        zoo.load_component("backbone", "hunyuanvideo-transformer", weights=tmp_path)


def test_random_model_has_the_checkpoint_names_and_shapes():
    ours = {name: tuple(p.shape) for name, p in tiny_backbone().network.parameters_and_names()}
    reference = {name: tuple(t.shape) for name, t in HunyuanVideoTransformer3DModel(**TINY).state_dict().items()}
    assert ours == reference


def test_defaults_and_names_are_diffusers_config():
    defaults = {name: param.default for name, param in
                inspect.signature(HunyuanVideoTransformer3DModel.__init__).parameters.items() if name != "self"}
    ours = HunyuanVideoTransformerConfig().model_dump()
    assert set(ours) - set(defaults) == set(OWN_OPTIONS)
    assert {name: ours[name] for name in defaults} == {k: (tuple(v) if isinstance(v, list) else v)
                                                       for k, v in defaults.items()}
    saved = dict(HunyuanVideoTransformer3DModel(**TINY).config)
    assert HunyuanVideoTransformerConfig.from_saved(saved).model_dump(exclude=set(OWN_OPTIONS)) == {
        k: v for k, v in saved.items() if not k.startswith("_")}


def test_plugin_listing_does_not_import_mindspore():
    code = ("import sys, plugins.hunyuanvideo_transformer, plugins.hunyuanvideo_transformer.config; "
            "assert 'mindspore' not in sys.modules, 'mindspore imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
