"""Live parity of the image-to-video variants of ``hunyuanvideo-transformer`` with diffusers'
``HunyuanVideoTransformer3DModel``: ``image_condition_type`` ``latent_concat`` (with the
first-frame mask channel) and ``token_replace``, and SkyReels-V1's concat without a mask.

Diffusers' pipelines build the transformer's input themselves (the concat, or the image's
latents as the first frame); ours takes the image's latents and builds it, so the reference
here gets the input its pipeline would build.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import zoo
from contracts import ContractError, TextEmbeddings
from tests.test_transformer_parity import TOLERANCE, reference_model

VARIANTS = ("latent_concat", "token_replace", "skyreels")


@st.composite
def configs(draw: st.DrawFn, variant: str) -> dict:
    axes = tuple(2 * draw(st.integers(1, 2)) for _ in range(3))
    channels = draw(st.integers(1, 3))
    in_channels = {"latent_concat": 2 * channels + 1, "token_replace": channels, "skyreels": 2 * channels}[variant]
    return dict(
        in_channels=in_channels, out_channels=channels,
        image_condition_type=None if variant == "skyreels" else variant,
        num_attention_heads=draw(st.integers(1, 2)), attention_head_dim=sum(axes), rope_axes_dim=axes,
        num_layers=draw(st.integers(0, 2)), num_single_layers=draw(st.integers(0, 2)),
        num_refiner_layers=draw(st.integers(0, 1)), mlp_ratio=draw(st.sampled_from([1.0, 2.0])),
        patch_size=draw(st.integers(1, 2)), patch_size_t=draw(st.integers(1, 2)),
        guidance_embeds=draw(st.booleans()), text_embed_dim=draw(st.integers(2, 8)),
        pooled_projection_dim=draw(st.integers(2, 6)),
    )


def reference_input(variant: str, latents: np.ndarray, image: np.ndarray) -> np.ndarray:
    """What diffusers' image-to-video pipelines hand the transformer."""
    if variant == "token_replace":
        return np.concatenate([image, latents[:, :, 1:]], axis=2)
    condition = np.zeros_like(latents)
    condition[:, :, :1] = image
    if variant == "skyreels":
        return np.concatenate([latents, condition], axis=1)
    mask = np.zeros_like(latents[:, :1])
    mask[:, :, 0] = 1
    return np.concatenate([latents, condition, mask], axis=1)


@pytest.mark.parametrize("variant", VARIANTS)
@given(data=st.data(), batch=st.integers(1, 2), grid=st.tuples(*[st.integers(1, 3)] * 3),
       length=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_matches_diffusers(variant, data, batch, grid, length, seed):
    config = data.draw(configs(variant))
    rng = np.random.default_rng(seed)
    reference = reference_model(config, seed)
    shape = (batch, config["out_channels"], grid[0] * config["patch_size_t"],
             grid[1] * config["patch_size"], grid[2] * config["patch_size"])
    latents = rng.standard_normal(shape, dtype=np.float32)
    image = rng.standard_normal((*shape[:2], 1, *shape[3:]), dtype=np.float32)
    hidden = rng.standard_normal((batch, length, config["text_embed_dim"]), dtype=np.float32)
    mask = np.arange(length)[None, :] < rng.integers(1, length + 1, batch)[:, None]
    pooled = rng.standard_normal((batch, config["pooled_projection_dim"]), dtype=np.float32)
    timestep = rng.uniform(0.0, 1000.0, batch).astype(np.float32)
    scale = np.float32(rng.uniform(1.0, 10.0))

    with torch.no_grad():
        expected = reference(
            torch.from_numpy(reference_input(variant, latents, image)), torch.from_numpy(timestep),
            torch.from_numpy(hidden), torch.from_numpy(mask), torch.from_numpy(pooled),
            guidance=torch.tensor([scale] * batch) * 1000.0 if config["guidance_embeds"] else None,
            return_dict=False,
        )[0].numpy()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        ours = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
    assert ours.config.image_conditioning == ("latent_concat" if variant == "skyreels" else variant)
    text = TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)
    actual = ours(latents, timestep, text, guidance=scale if config["guidance_embeds"] else None, image=image)

    assert actual.shape == expected.shape == shape
    output_scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual - expected).max())
    assert diff <= TOLERANCE * output_scale, f"max abs diff {diff:.3g} at output scale {output_scale:.3g}"


SMALL = dict(num_attention_heads=1, attention_head_dim=8, rope_axes_dim=(2, 2, 4), num_layers=1,
             num_single_layers=0, text_embed_dim=4, pooled_projection_dim=4, guidance_embeds=False)


def test_the_image_is_required_exactly_when_declared():
    small = SMALL
    latents = np.zeros((1, 2, 1, 2, 2), np.float32)
    text = TextEmbeddings(hidden_states=np.zeros((1, 2, 4), np.float32), attention_mask=np.ones((1, 2), bool),
                          pooled=np.zeros((1, 4), np.float32))
    t2v = zoo.load_component("backbone", "hunyuanvideo-transformer", in_channels=2, out_channels=2, **small)
    with pytest.raises(ContractError, match="text-to-video"):
        t2v(latents, np.zeros(1), text, image=latents)
    i2v = zoo.load_component("backbone", "hunyuanvideo-transformer", in_channels=2, out_channels=2,
                             image_condition_type="token_replace", **small)
    with pytest.raises(ContractError, match="image-to-video"):
        i2v(latents, np.zeros(1), text)
    with pytest.raises(ContractError, match=r"image: expected the image's latents \[B, C, 1, h, w\]"):
        i2v(latents, np.zeros(1), text, image=np.zeros((1, 2, 1, 2, 4), np.float32))


@pytest.mark.parametrize(("in_channels", "kind"), [(4, "latent_concat"), (4, "token_replace"), (3, None)])
def test_channel_counts_that_fit_no_variant_are_refused(in_channels, kind):
    with pytest.raises(zoo.ComponentOptionsError, match="in_channels"):
        zoo.load_component("backbone", "hunyuanvideo-transformer", in_channels=in_channels, out_channels=2,
                           image_condition_type=kind, **SMALL)
