"""Contract 1.1: the contract kit on image-conditioned backbones and an image-reading encoder, and
components written for contract 1.0 still working (as text-to-video components)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import CLIPTextModel

import zoo
import zoo.testkit.backbone  # noqa: F401 - registers the backbone properties
import zoo.testkit.encoder  # noqa: F401 - registers the encoder properties
from contracts import CONTRACT_VERSION, ComponentConfig, image_conditioning, is_compatible, takes_images
from registry import default_registry
from tests import llava_fixtures as fx
from tests.text_fixtures import randomized
from zoo import tiny
from zoo.testkit.core import PROPERTIES

TINY = dict(num_attention_heads=2, attention_head_dim=8, num_layers=1, num_single_layers=1, num_refiner_layers=1,
            mlp_ratio=2.0, patch_size=2, patch_size_t=1, text_embed_dim=6, pooled_projection_dim=5,
            rope_axes_dim=(2, 2, 4))
VARIANTS = {
    "latent_concat": dict(in_channels=7, out_channels=3, image_condition_type="latent_concat"),
    "token_replace": dict(in_channels=3, out_channels=3, image_condition_type="token_replace"),
    "skyreels": dict(in_channels=6, out_channels=3),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("prop", PROPERTIES["backbone"], ids=lambda p: p.id)
def test_image_conditioned_backbones_keep_the_contract(prop, variant):
    prop.check(lambda: zoo.load_component("backbone", "hunyuanvideo-transformer", **TINY, **VARIANTS[variant]))


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory) -> Path:
    config = fx.llava_config()
    tokenizer_2 = tiny.clip_tokenizer()
    return fx.save_pipeline(tmp_path_factory.mktemp("llava"), fx.reference_llava(config, 0), fx.tokenizer(),
                            fx.image_processor(config.vision_config.image_size),
                            randomized(CLIPTextModel(tiny.clip_config(tokenizer_2)), 1), tokenizer_2)


@pytest.mark.parametrize("prop", PROPERTIES["encoder"], ids=lambda p: p.id)
def test_the_image_reading_encoder_keeps_the_contract(prop, llava_folder):
    template = fx.template(fx.expected_features(fx.llava_config()))
    prop.check(lambda: zoo.load_component("encoder", "hunyuanvideo-i2v-text", weights=llava_folder,
                                          prompt_template=template, max_sequence_length=24))


class OldBackboneConfig(ComponentConfig):
    """A backbone config of contract 1.0: no out_channels, image_conditioning or condition_channels."""

    in_channels: int = 16
    text_embed_dim: int = 32
    pooled_projection_dim: int = 16
    patch_size: int = 2
    patch_size_t: int = 1
    guidance_embeds: bool = True


class OldBackbone:
    """A contract 1.0 backbone: ``__call__`` has no ``image``."""

    def __init__(self, config: OldBackboneConfig, weights: Path | None = None) -> None:
        self.config = config
        self.inner = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=weights)

    def __call__(self, latents, timestep, text, guidance=None):
        return self.inner(latents, timestep, text, guidance)


@pytest.fixture
def old_backbone():
    registry = default_registry()
    saved = registry.copy()
    registry.register("backbone", "old-backbone", OldBackbone, config=OldBackboneConfig, plugin="contract-1.0")
    yield "old-backbone"
    registry.update_from(saved)


def test_a_contract_1_0_backbone_still_runs_text_to_video(old_backbone):
    assert is_compatible("1.0", CONTRACT_VERSION) and CONTRACT_VERSION == "1.1"
    config = OldBackboneConfig()
    assert image_conditioning(config) == "none" and not takes_images(config)
    settings = dict(num_frames=5, num_inference_steps=2, seed=1, progress=False)
    with pytest.warns(UserWarning, match="ignoring config.json settings"):  # the folder's other keys
        old = zoo.from_pretrained("hunyuanvideo-tiny", backbone=old_backbone)
    expected = zoo.from_pretrained("hunyuanvideo-tiny")("a cat", **settings).frames
    assert np.array_equal(old("a cat", **settings).frames, expected)
    with pytest.raises(ValueError, match="backbone 'old-backbone' is text-to-video"):
        old("a cat", image=np.zeros((64, 64, 3), np.uint8), **settings)
