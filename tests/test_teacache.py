"""``hunyuanvideo-transformer-teacache``: skip decisions and outputs equal to the published TeaCache rule
computed independently on diffusers' model, exact with threshold 0, option errors, the backbone contract
kit, and loading by name.

The reference is diffusers' ``HunyuanVideoTransformer3DModel`` with the same weights, run with the
published ``TeaCache4HunyuanVideo`` rule through two forward hooks: before its first dual-stream block,
that block's ``norm1`` gives the modulated input, whose relative L1 change (torch means, as published) is
rescaled by the published polynomial (numpy) and accumulated into the decision; before its final norm,
a computed call stores the video residual of all blocks and a skipped call replaces the blocks' output by
the embedded video tokens plus that residual. Each prompt (cond, uncond) has its own state, as each of
our trajectories does.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from diffusers import HunyuanVideoTransformer3DModel
from hypothesis import assume, event, given
from hypothesis import strategies as st

import zoo
import zoo.testkit.backbone  # noqa: F401 - registers the backbone properties
from plugins.hunyuanvideo_teacache.backbone import TeaCacheTransformer
from plugins.hunyuanvideo_text.config import DEFAULT_TEMPLATE
from tests import cache_fixtures as fixtures
from zoo import tiny
from zoo.testkit.core import PROPERTIES

NAME = "hunyuanvideo-transformer-teacache"
TOLERANCE = 1e-4
PUBLISHED = [7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02]
# Decisions closer than this to the threshold are left out: ours and the reference round differently.
MARGIN = 1e-3
# These random models' modulated input changes by 0.03 to 0.1 (relative) per step, rescaled to 0.05-0.13,
# so this threshold both skips and computes; no accumulated change in these runs lies within 9e-3 of it.
THRESHOLD = 0.33
STEPS = 6


@dataclass
class PublishedState:
    count: int = 0
    accumulated: float = 0.0
    previous: torch.Tensor | None = None
    residual: torch.Tensor | None = None
    block_input: torch.Tensor | None = None
    compute: bool = True


class PublishedTeaCache:
    """The published rule on diffusers' model, through hooks; ``context`` picks the prompt's state."""

    def __init__(self, model: HunyuanVideoTransformer3DModel, threshold: float, num_steps: int | None) -> None:
        self.threshold, self.num_steps = threshold, num_steps
        self.states: dict[int, PublishedState] = {}
        self.context = 0
        self.skipped: list[bool] = []
        self.margins: list[float] = []
        model.transformer_blocks[0].register_forward_pre_hook(self._decide)
        model.norm_out.register_forward_pre_hook(self._final_norm)

    def _decide(self, block: torch.nn.Module, args: tuple) -> None:
        video, temb = args[0], args[2]
        state = self.states.setdefault(self.context, PublishedState())
        modulated = block.norm1(video, emb=temb)[0]
        last = self.num_steps is not None and state.count == self.num_steps - 1
        if state.count == 0 or last:
            state.compute, state.accumulated = True, 0.0
        else:
            change = ((modulated - state.previous).abs().mean() / state.previous.abs().mean()).item()
            state.accumulated += np.poly1d(PUBLISHED)(change)
            self.margins.append(abs(state.accumulated - self.threshold))
            state.compute = not state.accumulated < self.threshold
            if state.compute:
                state.accumulated = 0.0
        state.previous, state.block_input = modulated, video
        state.count = 0 if last else state.count + 1
        self.skipped.append(not state.compute)

    def _final_norm(self, norm: torch.nn.Module, args: tuple) -> tuple | None:
        state = self.states[self.context]
        if state.compute:
            state.residual = args[0] - state.block_input
            return None
        return (state.block_input + state.residual, *args[1:])

    def velocity(self, model: HunyuanVideoTransformer3DModel) -> fixtures.Velocity:
        prompts = fixtures.texts()

        def call(sample: np.ndarray, timestep: float, text: int) -> np.ndarray:
            self.context = text
            return fixtures.diffusers_output(model, sample, timestep, prompts[text])

        return call


@st.composite
def runs(draw: st.DrawFn) -> dict:
    """A tiny transformer, latents, a schedule and the cache's options."""
    head_dim, axes = draw(st.sampled_from([(8, (2, 2, 4)), (12, (4, 4, 4))]))
    patch = draw(st.integers(1, 2))
    return dict(
        model=dict(num_attention_heads=draw(st.integers(1, 2)), attention_head_dim=head_dim, rope_axes_dim=axes,
                   num_layers=draw(st.integers(1, 2)), num_single_layers=draw(st.integers(0, 2)), patch_size=patch),
        shape=(1, 4, draw(st.integers(1, 2)), patch * draw(st.integers(1, 2)), patch * draw(st.integers(1, 2))),
        seed=draw(st.integers(0, 2**16)), scheduler=draw(st.sampled_from(["flow-match-euler", "flow-match-heun"])),
        steps=draw(st.integers(3, 5)), threshold=draw(st.floats(0.05, 0.6)), knows_last=draw(st.booleans()))


@given(runs())
def test_decisions_and_outputs_follow_the_published_rule(tmp_path_factory, run):
    """Step by step over a true-CFG loop: the same skip decisions, and outputs (skipped calls included)
    within 1e-4 of the published rule's."""
    folder = tmp_path_factory.mktemp("teacache")
    reference, folder = fixtures.reference_folder(folder, seed=run["seed"], **run["model"])
    calls = len(zoo.load_component("scheduler", run["scheduler"]).schedule(run["steps"]))
    num_steps = calls if run["knows_last"] else None
    published = PublishedTeaCache(reference, run["threshold"], num_steps)
    ours = zoo.load_component("backbone", NAME, weights=folder, rel_l1_thresh=run["threshold"], num_steps=num_steps)
    start = fixtures.latents(run["seed"], run["shape"])
    expected = fixtures.denoise(published.velocity(reference), start, run["scheduler"], run["steps"])
    skipped: list[bool] = []
    actual = fixtures.denoise(fixtures.ours_velocity(ours, skipped), start, run["scheduler"], run["steps"])

    assume(min(published.margins, default=1.0) > MARGIN)
    event("some calls skipped" if any(published.skipped) else "no call skipped")
    assert skipped == published.skipped
    assert ours.stats.skipped == sum(skipped)
    fixtures.assert_outputs_close(actual, expected, TOLERANCE)


@pytest.mark.parametrize("scheduler", ["flow-match-euler", "flow-match-heun"])
def test_skips_and_computes_the_first_and_last_steps(tmp_path, scheduler):
    """Two generations one after the other, each with a prompt and a negative prompt; the published
    counter wraps after ``num_steps`` calls, ours restarts with the new trajectory."""
    reference, folder = fixtures.reference_folder(tmp_path)
    calls = len(zoo.load_component("scheduler", scheduler).schedule(STEPS))
    published = PublishedTeaCache(reference, THRESHOLD, calls)
    ours = zoo.load_component("backbone", NAME, weights=folder, rel_l1_thresh=THRESHOLD, num_steps=calls)
    skipped: list[bool] = []
    expected, actual = [], []
    for seed in (0, 1):
        expected += fixtures.denoise(published.velocity(reference), fixtures.latents(seed), scheduler, STEPS)
        actual += fixtures.denoise(fixtures.ours_velocity(ours, skipped), fixtures.latents(seed), scheduler, STEPS)

    assert min(published.margins) > MARGIN
    assert skipped == published.skipped
    assert 0 < sum(skipped) < len(skipped), "expected some calls skipped and some not"
    per_generation = np.array(skipped).reshape(2, calls, 2)  # generation, call, prompt
    assert not per_generation[:, [0, -1]].any(), "the first and last calls of a trajectory are always computed"
    fixtures.assert_outputs_close(actual, expected, TOLERANCE)


@pytest.mark.parametrize("blocks", [(2, 2), (1, 0)], ids=lambda b: f"{b[0]}dual-{b[1]}single")
def test_threshold_zero_equals_the_transformer(tmp_path, blocks):
    """Exactly our plain transformer's outputs, and diffusers' uncached model's within 1e-4."""
    reference, folder = fixtures.reference_folder(tmp_path, num_layers=blocks[0], num_single_layers=blocks[1])
    plain = zoo.load_component("backbone", "hunyuanvideo-transformer", weights=folder)
    cached = zoo.load_component("backbone", NAME, weights=folder, rel_l1_thresh=0.0, num_steps=4)
    expected = fixtures.denoise(fixtures.ours_velocity(plain), fixtures.latents(0), "flow-match-euler", 4)
    actual = fixtures.denoise(fixtures.ours_velocity(cached), fixtures.latents(0), "flow-match-euler", 4)
    for index, (ours, theirs) in enumerate(zip(actual, expected, strict=True)):
        assert np.array_equal(ours, theirs), f"output {index} differs by {np.abs(ours - theirs).max():.3g}"
    assert (cached.stats.calls, cached.stats.skipped) == (8, 0)
    prompts = fixtures.texts()
    uncached = fixtures.denoise(
        lambda sample, timestep, text: fixtures.diffusers_output(reference, sample, timestep, prompts[text]),
        fixtures.latents(0), "flow-match-euler", 4)
    fixtures.assert_outputs_close(actual, uncached, TOLERANCE)


@pytest.mark.parametrize(("options", "named"), [
    (dict(rel_l1_thresh=-0.1), "rel_l1_thresh"),
    (dict(num_steps=0), "num_steps"),
    (dict(num_layers=0), "num_layers"),
    (dict(rel_l1_thresh="fast"), "rel_l1_thresh"),
])
def test_bad_options_name_the_problem(options, named):
    with pytest.raises(zoo.ComponentOptionsError, match=named) as error:
        zoo.load_component("backbone", NAME, **{**fixtures.TINY, **options})
    assert "Traceback" not in str(error.value)


@pytest.mark.parametrize("variant", [{}, {"image_condition_type": "token_replace"}], ids=["t2v", "i2v"])
@pytest.mark.parametrize("prop", PROPERTIES["backbone"], ids=lambda p: p.id)
def test_contract_property(prop, variant):
    prop.check(lambda: zoo.load_component("backbone", NAME, **fixtures.TINY, **variant))


def test_loads_a_diffusers_folder_and_swaps_in_by_name(tmp_path):
    reference, folder = fixtures.reference_folder(tmp_path / "transformer")
    ours = zoo.load_component("backbone", NAME, weights=folder)
    assert isinstance(ours, TeaCacheTransformer)
    assert (ours.config.rel_l1_thresh, ours.config.num_steps) == (0.15, None)
    names = {name: tuple(p.shape) for name, p in ours.network.parameters_and_names()}
    assert names == {name: tuple(t.shape) for name, t in reference.state_dict().items()}

    tiny.write_tiny_pipeline(tmp_path / "pipeline")
    settings = dict(height=32, width=32, num_frames=5, num_inference_steps=3, seed=0,
                    prompt_template=DEFAULT_TEMPLATE, progress=False)
    exact = zoo.from_pretrained(tmp_path / "pipeline", backbone={"name": NAME, "options": {"rel_l1_thresh": 0.0}})
    assert isinstance(exact.backbone, TeaCacheTransformer)
    plain = zoo.from_pretrained(tmp_path / "pipeline")("a cat", **settings)
    assert np.array_equal(exact("a cat", **settings).latents, plain.latents)


def test_plugin_listing_does_not_import_mindspore():
    code = ("import sys, plugins.hunyuanvideo_teacache, plugins.hunyuanvideo_teacache.config; "
            "assert 'mindspore' not in sys.modules, 'mindspore imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
