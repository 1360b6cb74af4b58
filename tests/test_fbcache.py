"""``hunyuanvideo-transformer-fbcache``: exact with threshold 0, live parity with diffusers' first-block
cache over denoising runs, the backbone contract kit, and loading by name from diffusers folders.

Reference and ours share weights through a folder saved by diffusers. Both run the same denoising loop
(our schedulers, true CFG with a prompt and a negative one); diffusers' model runs under
``enable_cache(FirstBlockCacheConfig(threshold))`` with the pipeline's ``cache_context("cond"/"uncond")``
and ``_reset_stateful_cache()`` between generations, ours only through the backbone contract.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from diffusers import HunyuanVideoTransformer3DModel
from diffusers.hooks import FirstBlockCacheConfig

import zoo
import zoo.testkit.backbone  # noqa: F401 - registers the backbone properties
from plugins.common.options import OWN_OPTIONS
from plugins.hunyuanvideo_fbcache.backbone import FirstBlockCacheTransformer
from plugins.hunyuanvideo_text.config import DEFAULT_TEMPLATE
from tests.cache_fixtures import (
    TINY,
    Velocity,
    assert_outputs_close,
    denoise,
    diffusers_output,
    latents,
    ours_velocity,
    reference_folder,
    texts,
)
from zoo import tiny
from zoo.testkit.core import PROPERTIES

NAME = "hunyuanvideo-transformer-fbcache"
TOLERANCE = 1e-4
# These random models' first-block residual changes by 0.2 to 0.6 (relative) from step to step, so this
# threshold both skips and computes; no change in these runs lies within 3e-3 of it, far above rounding.
THRESHOLD = 0.4


def reference_velocity(model: HunyuanVideoTransformer3DModel, decisions: list[bool]) -> Velocity:
    """diffusers' model as ``HunyuanVideoPipeline`` calls it, in the pipeline's cache contexts; each call's
    skip decision (its first-block hook's shared state) is appended to ``decisions``."""
    prompts = texts()
    leader = next(module._diffusers_hook.get_hook("fbc_leader_block_hook") for module in model.modules()
                  if hasattr(module, "_diffusers_hook") and module._diffusers_hook.get_hook("fbc_leader_block_hook"))

    def call(sample: np.ndarray, timestep: float, text: int) -> np.ndarray:
        context = ("cond", "uncond")[text]
        with model.cache_context(context):
            out = diffusers_output(model, sample, timestep, prompts[text])
        decisions.append(not leader.state_manager._state_cache[context].should_compute)
        return out

    return call


@pytest.mark.parametrize("blocks", [(2, 2), (0, 2), (2, 0), (1, 0)], ids=lambda b: f"{b[0]}dual-{b[1]}single")
def test_threshold_zero_equals_the_transformer_exactly(tmp_path, blocks):
    _, folder = reference_folder(tmp_path, num_layers=blocks[0], num_single_layers=blocks[1])
    plain = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
    cached = zoo.load_component("backbone", NAME, weights=folder, threshold=0.0)
    expected = denoise(ours_velocity(plain), latents(0), "flow-match-euler", 4)
    actual = denoise(ours_velocity(cached), latents(0), "flow-match-euler", 4)
    for index, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        assert np.array_equal(ours, theirs), f"output {index} differs by {np.abs(ours - theirs).max():.3g}"
    assert (cached.stats.calls, cached.stats.skipped) == (8, 0)


@pytest.mark.parametrize(("blocks", "scheduler"), [
    ((2, 2), "flow-match-euler"),
    ((2, 2), "flow-match-heun"),
    ((0, 3), "flow-match-euler"),
    ((3, 0), "flow-match-euler"),
], ids=["2dual-2single-euler", "2dual-2single-heun", "single-only", "dual-only"])
def test_skips_the_steps_diffusers_skips_with_the_same_outputs(tmp_path, blocks, scheduler):
    """Two generations one after the other (diffusers' cache reset between them as its pipeline resets it,
    ours by itself when the timestep rises), each with a prompt and a negative prompt."""
    reference, folder = reference_folder(tmp_path, num_layers=blocks[0], num_single_layers=blocks[1])
    reference.enable_cache(FirstBlockCacheConfig(threshold=THRESHOLD))
    ours = zoo.load_component("backbone", NAME, weights=folder, threshold=THRESHOLD)
    theirs_skipped, ours_skipped = [], []
    expected, actual = [], []
    for seed, steps in ((0, 8), (1, 5)):
        expected += denoise(reference_velocity(reference, theirs_skipped), latents(seed), scheduler, steps)
        reference._reset_stateful_cache()
        actual += denoise(ours_velocity(ours, ours_skipped), latents(seed), scheduler, steps)

    assert ours_skipped == theirs_skipped
    assert 0 < sum(ours_skipped) < len(ours_skipped), "expected some calls skipped and some not"
    assert ours.stats.skipped == sum(ours_skipped)
    assert_outputs_close(actual, expected, TOLERANCE)


@pytest.mark.parametrize("prop", PROPERTIES["backbone"], ids=lambda p: p.id)
def test_contract_property(prop):
    prop.check(lambda: zoo.load_component("backbone", NAME, **TINY))


def test_loads_a_diffusers_transformer_folder(tmp_path):
    reference, folder = reference_folder(tmp_path)
    ours = zoo.load_component("backbone", NAME, weights=folder, threshold=0.1)
    assert isinstance(ours, FirstBlockCacheTransformer)
    saved = {k: v for k, v in reference.config.items() if not k.startswith("_")}
    assert ours.config.model_dump(exclude={*OWN_OPTIONS, "threshold"}) == {
        k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    assert ours.config.threshold == 0.1
    assert zoo.load_component("backbone", NAME, **TINY).config.threshold == FirstBlockCacheConfig().threshold
    names = {name: tuple(p.shape) for name, p in ours.network.parameters_and_names()}
    assert names == {name: tuple(t.shape) for name, t in reference.state_dict().items()}
    with pytest.raises(zoo.ComponentOptionsError, match="threshold"):
        zoo.load_component("backbone", NAME, threshold=-0.1)


def test_from_pretrained_swaps_in_the_cached_backbone_by_name(tmp_path):
    tiny.write_tiny_pipeline(tmp_path)
    settings = dict(height=32, width=32, num_frames=5, num_inference_steps=3, seed=0,
                    prompt_template=DEFAULT_TEMPLATE, progress=False)
    swapped = zoo.from_pretrained(tmp_path, backbone=NAME)
    assert isinstance(swapped.backbone, FirstBlockCacheTransformer)
    assert swapped.backbone.config.threshold == 0.05
    exact = zoo.from_pretrained(tmp_path, backbone={"name": NAME, "options": {"threshold": 0.0}})
    plain = zoo.from_pretrained(tmp_path)("a cat", **settings)
    assert np.array_equal(exact("a cat", **settings).latents, plain.latents)
    assert swapped("a cat", **settings).frames.shape == plain.frames.shape


def test_plugin_listing_does_not_import_mindspore():
    code = ("import sys, plugins.hunyuanvideo_fbcache, plugins.hunyuanvideo_fbcache.config; "
            "assert 'mindspore' not in sys.modules, 'mindspore imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
