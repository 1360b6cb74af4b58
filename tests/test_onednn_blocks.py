"""The transformer's blocks, embedders and final norm on the oneDNN path (``onednn_blocks``: norms
with their modulation, gates and residuals inside the matmuls, joint query/key/value buffers)
compute what the same backbone computes cell by cell, in bf16 and in float32, on tiny
configurations hypothesis draws: batches of one and two with padded text, every block kind,
token replacement; and a block whose layers are not plain ``Linear``s keeps the cell path."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from contracts import TextEmbeddings
from plugins.common import onednn
from plugins.common.layers import Linear
from plugins.hunyuanvideo_transformer import onednn_blocks
from plugins.hunyuanvideo_transformer.blocks import SingleStreamBlock
from plugins.hunyuanvideo_transformer.model import WHOLE_ON_ONEDNN
from tests.test_onednn import needs_bf16
from tests.test_transformer_image_parity import configs as image_configs
from tests.test_transformer_parity import configs, reference_model


def compute_cell_by_cell(backbone) -> None:
    """The blocks, embedders and final norm computed cell by cell (their layers stay on oneDNN)."""
    for _, cell in backbone.network.cells_and_names():
        if isinstance(cell, WHOLE_ON_ONEDNN):
            cell.onednn_path = False


@pytest.fixture(params=["compiled", "numpy"])
def preparation(request, monkeypatch):
    """How queries and keys are normed, rotated and rounded: by the compiled helper (where it is
    built) or by oneDNN norms and numpy."""
    if request.param == "numpy":
        monkeypatch.setattr(onednn, "can_prepare_heads", lambda: False)
    elif not onednn.can_prepare_heads():
        pytest.skip("the compiled helper is not built here")


cases = given(data=st.data(), batch=st.integers(1, 2), grid=st.tuples(*[st.integers(1, 3)] * 3),
              length=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))


@needs_bf16
@pytest.mark.parametrize("variant", ["text", "token_replace"])
@settings(max_examples=12, deadline=None)
@cases
def test_fused_blocks_equal_the_cell_by_cell_bf16_path(preparation, variant, data, batch, grid, length, seed):
    fused, cell_by_cell = both_paths("bfloat16", variant, data, batch, grid, length, seed)
    scale = max(1.0, float(np.abs(cell_by_cell).max()))
    # the same bf16 roundings, but float32 steps fused differently: a bf16 rounding may flip
    assert np.abs(fused - cell_by_cell).max() <= 1e-2 * scale


@pytest.mark.parametrize("variant", ["text", "token_replace"])
@settings(max_examples=6, deadline=None)
@cases
def test_fused_float32_blocks_equal_the_cell_by_cell_float32_path(variant, data, batch, grid, length, seed):
    fused, cell_by_cell = both_paths("float32", variant, data, batch, grid, length, seed)
    assert np.abs(fused - cell_by_cell).max() <= 1e-4 * max(1.0, float(np.abs(cell_by_cell).max()))


def both_paths(compute_dtype, variant, data, batch, grid, length, seed) -> tuple[np.ndarray, np.ndarray]:
    """One backbone's output with its blocks computed whole on oneDNN, and cell by cell (each
    layer still on oneDNN)."""
    config = data.draw(configs() if variant == "text" else image_configs(variant))
    rng = np.random.default_rng(seed)
    shape = (batch, config["out_channels"], grid[0] * config["patch_size_t"],
             grid[1] * config["patch_size"], grid[2] * config["patch_size"])
    latents = rng.standard_normal(shape, dtype=np.float32)
    image = rng.standard_normal((*shape[:2], 1, *shape[3:]), dtype=np.float32) if variant != "text" else None
    mask = np.arange(length)[None, :] < rng.integers(1, length + 1, batch)[:, None]
    text = TextEmbeddings(hidden_states=rng.standard_normal((batch, length, config["text_embed_dim"]),
                                                            dtype=np.float32),
                          attention_mask=mask,
                          pooled=rng.standard_normal((batch, config["pooled_projection_dim"]), dtype=np.float32))
    timestep = rng.uniform(0.0, 1000.0, batch).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        reference_model(config, seed).save_pretrained(folder)
        backbone = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder,
                                      compute_dtype=compute_dtype)
    guidance = 6.0 if config["guidance_embeds"] else None
    fused = backbone(latents, timestep, text, guidance=guidance, image=image)
    compute_cell_by_cell(backbone)
    return fused, backbone(latents, timestep, text, guidance=guidance, image=image)


class _Doubled(Linear):
    """A layer computing otherwise than ``Linear`` (as a layer split across processes does)."""

    def construct(self, x):
        return super().construct(x) * 2


def test_a_block_with_layers_that_compute_otherwise_keeps_the_cell_path():
    block = SingleStreamBlock(heads=1, head_dim=8, mlp_ratio=1.0)
    assert onednn_blocks.fusable(block)
    block.proj_out = _Doubled(16, 8)
    assert not onednn_blocks.fusable(block)
