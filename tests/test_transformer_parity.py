"""Live parity of ``hunyuanvideo-transformer`` with diffusers' ``HunyuanVideoTransformer3DModel``.

Hypothesis draws a tiny configuration and inputs; the reference gets random weights
(every parameter, so that no zero-initialised layer hides a mistake), is saved with
``save_pretrained`` (single file or sharded), and ours loads that folder. Both are
called as diffusers' pipeline calls the model: timestep as a float, guidance as
``1000 * scale``.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel
from hypothesis import example, given
from hypothesis import strategies as st

import zoo
from contracts import TextEmbeddings
from plugins.common.layers import Linear
from plugins.common.options import OWN_OPTIONS
from plugins.hunyuanvideo_transformer.backbone import HunyuanVideoTransformer

TOLERANCE = 1e-4


@st.composite
def configs(draw: st.DrawFn) -> dict:
    axes = tuple(2 * draw(st.integers(1, 3)) for _ in range(3))
    channels = draw(st.integers(1, 4))
    return dict(
        in_channels=channels, out_channels=channels,
        num_attention_heads=draw(st.integers(1, 3)), attention_head_dim=sum(axes), rope_axes_dim=axes,
        num_layers=draw(st.integers(0, 2)), num_single_layers=draw(st.integers(0, 2)),
        num_refiner_layers=draw(st.integers(0, 2)), mlp_ratio=draw(st.sampled_from([1.0, 2.0, 4.0])),
        patch_size=draw(st.integers(1, 2)), patch_size_t=draw(st.integers(1, 2)),
        guidance_embeds=draw(st.booleans()), text_embed_dim=draw(st.integers(2, 12)),
        pooled_projection_dim=draw(st.integers(2, 8)),
        rope_theta=draw(st.sampled_from([256.0, 10000.0])),
    )


def reference_model(config: dict, seed: int) -> HunyuanVideoTransformer3DModel:
    torch.manual_seed(seed)
    model = HunyuanVideoTransformer3DModel(**config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 1.0).mul_(torch.empty(()).uniform_(0.05, 0.2))
    return model


def tiny(**options) -> dict:
    config = dict(in_channels=2, out_channels=2, num_attention_heads=2, attention_head_dim=8,
                  rope_axes_dim=(2, 2, 4), num_layers=1, num_single_layers=1, num_refiner_layers=1,
                  mlp_ratio=2.0, patch_size=2, patch_size_t=1, guidance_embeds=True, text_embed_dim=6,
                  pooled_projection_dim=4, rope_theta=256.0)
    return {**config, **options}


@pytest.fixture(params=["f32", False], ids=["onednn", "mindspore"])
def float32_path(request, monkeypatch):
    """The path float32 takes on the CPU: oneDNN's float32 primitives (the default), or MindSpore's
    own ops (``HUNYUAN_ZOO_CPU_ONEDNN=0``, and the path on other devices)."""
    if not request.param:
        monkeypatch.setenv("HUNYUAN_ZOO_CPU_ONEDNN", "0")
    return request.param


@given(config=configs(), batch=st.integers(1, 2), grid=st.tuples(*[st.integers(1, 3)] * 3),
       length=st.integers(1, 6), sharded=st.booleans(), seed=st.integers(0, 2**31 - 1))
@example(config=tiny(num_layers=2, num_single_layers=2, num_refiner_layers=2, patch_size_t=2),
         batch=2, grid=(2, 2, 3), length=6, sharded=True, seed=1)
@example(config=tiny(guidance_embeds=False, num_layers=0, patch_size=1), batch=1, grid=(1, 2, 2), length=4,
         sharded=False, seed=2)
def test_matches_diffusers(float32_path, config, batch, grid, length, sharded, seed):
    rng = np.random.default_rng(seed)
    reference = reference_model(config, seed)
    shape = (batch, config["in_channels"], grid[0] * config["patch_size_t"],
             grid[1] * config["patch_size"], grid[2] * config["patch_size"])
    latents = rng.standard_normal(shape, dtype=np.float32)
    hidden = rng.standard_normal((batch, length, config["text_embed_dim"]), dtype=np.float32)
    # right-padded, as the text encoder pads
    mask = np.arange(length)[None, :] < rng.integers(1, length + 1, batch)[:, None]
    pooled = rng.standard_normal((batch, config["pooled_projection_dim"]), dtype=np.float32)
    timestep = rng.uniform(0.0, 1000.0, batch).astype(np.float32)
    scale = np.float32(rng.uniform(1.0, 10.0))

    with torch.no_grad():
        expected = reference(
            torch.from_numpy(latents), torch.from_numpy(timestep), torch.from_numpy(hidden),
            torch.from_numpy(mask), torch.from_numpy(pooled),
            guidance=torch.tensor([scale] * batch) * 1000.0 if config["guidance_embeds"] else None,
            return_dict=False,
        )[0].numpy()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder, max_shard_size=20_000 if sharded else "10GB")
        ours = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
    assert isinstance(ours, HunyuanVideoTransformer)
    assert {cell.onednn_path for _, cell in ours.network.cells_and_names()
            if isinstance(cell, Linear)} == {float32_path}
    assert ours.config.model_dump(exclude=set(OWN_OPTIONS)) == {**config, "qk_norm": "rms_norm",
                                                         "image_condition_type": None}
    text = TextEmbeddings(hidden_states=hidden, attention_mask=mask, pooled=pooled)
    actual = ours(latents, timestep, text, guidance=scale if config["guidance_embeds"] else None)

    assert actual.shape == expected.shape
    output_scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(actual - expected).max())
    assert diff <= TOLERANCE * output_scale, f"max abs diff {diff:.3g} at output scale {output_scale:.3g}"


def test_sharded_save_really_shards(tmp_path):
    reference_model(dict(num_attention_heads=1, attention_head_dim=8, rope_axes_dim=(2, 2, 4),
                         num_layers=1, num_single_layers=1, text_embed_dim=4, pooled_projection_dim=4), 0
                    ).save_pretrained(tmp_path, max_shard_size=20_000)
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    assert len(list(tmp_path.glob("*.safetensors.index.json"))) == 1
