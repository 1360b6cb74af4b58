"""Both flow-matching schedulers against diffusers, and the scheduler contract."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler
from hypothesis import given
from hypothesis import strategies as st

import zoo
from zoo.testkit import properties

steps = st.integers(min_value=1, max_value=60)
shifts = st.floats(min_value=0.5, max_value=12.0)


def reference_trajectory(reference, sample: np.ndarray, velocities: list[np.ndarray]) -> list[np.ndarray]:
    out, x = [], torch.from_numpy(sample)
    for t, v in zip(reference.timesteps, velocities, strict=True):
        x = reference.step(torch.from_numpy(v), t, x).prev_sample
        out.append(x.numpy())
    return out


def our_trajectory(scheduler, schedule, sample: np.ndarray, velocities: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for index, v in enumerate(velocities):
        sample = scheduler.step(v, schedule, index, sample)
        out.append(sample)
    return out


def assert_same_trajectories(ours, schedule, reference, seed: int) -> None:
    """Every step of ours and of the diffusers scheduler, on the same random velocities."""
    rng = np.random.default_rng(seed)
    sample = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    velocities = [rng.standard_normal(sample.shape).astype(np.float32) for _ in range(len(schedule))]
    for a, b in zip(our_trajectory(ours, schedule, sample, velocities),
                    reference_trajectory(reference, sample, velocities), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("name", "reference_class", "spacing"), [
    ("flow-match-euler", FlowMatchEulerDiscreteScheduler, "hunyuanvideo"),  # as HunyuanVideoPipeline calls it
    ("flow-match-euler", FlowMatchEulerDiscreteScheduler, "diffusers"),  # set_timesteps(N)
    ("flow-match-heun", FlowMatchHeunDiscreteScheduler, "diffusers"),
])
@given(num_steps=steps, shift=shifts, seed=st.integers(0, 2**16))
def test_schedules_and_steps_match_diffusers(name, reference_class, spacing, num_steps, shift, seed):
    ours = zoo.load_component("scheduler", name, shift=shift, spacing=spacing)
    reference = reference_class(shift=shift)
    if spacing == "hunyuanvideo":
        reference.set_timesteps(sigmas=list(np.linspace(1.0, 0.0, num_steps + 1)[:-1]))
    else:
        reference.set_timesteps(num_steps)
    schedule = ours.schedule(num_steps)
    np.testing.assert_allclose(schedule.timesteps, reference.timesteps.numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(schedule.sigmas, reference.sigmas.numpy(), rtol=1e-5, atol=1e-6)
    assert_same_trajectories(ours, schedule, reference, seed)


@given(steps, shifts, st.integers(0, 2**16))
def test_heun_steps_match_diffusers_on_the_hunyuanvideo_spacing(num_steps, shift, seed):
    """diffusers' Heun cannot take custom sigmas; give it ours, laid out its way, and compare steps."""
    ours = zoo.load_component("scheduler", "flow-match-heun", shift=shift)
    schedule = ours.schedule(num_steps)
    reference = FlowMatchHeunDiscreteScheduler(shift=shift)
    reference.set_timesteps(num_steps)
    reference.timesteps = torch.from_numpy(schedule.timesteps)
    reference.sigmas = torch.from_numpy(schedule.sigmas)
    euler = zoo.load_component("scheduler", "flow-match-euler", shift=shift).schedule(num_steps)
    np.testing.assert_allclose(np.unique(schedule.sigmas), np.unique(euler.sigmas), rtol=1e-6)
    assert_same_trajectories(ours, schedule, reference, seed)


def test_heun_corrector_without_its_predictor_is_refused():
    heun = zoo.load_component("scheduler", "flow-match-heun")
    schedule = heun.schedule(4)
    sample = np.zeros((1, 2), np.float32)
    with pytest.raises(RuntimeError, match="must follow the predictor step 0"):
        heun.step(sample, schedule, 1, sample)


def test_step_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        zoo.load_component("scheduler", "flow-match-euler").schedule(0)


@pytest.mark.parametrize("name", ["flow-match-euler", "flow-match-heun"])
@pytest.mark.parametrize("prop", properties("scheduler"), ids=lambda p: p.id)
def test_scheduler_contract(name, prop):
    prop.check(lambda: zoo.load_component("scheduler", name, shift=5.0))
