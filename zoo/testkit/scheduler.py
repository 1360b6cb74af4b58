"""Contract properties of schedulers."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from contracts import Schedule
from zoo.testkit.core import Make, contract_property

steps = st.integers(min_value=1, max_value=30)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


def _array(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _advance(scheduler, schedule: Schedule, upto: int, sample: np.ndarray, seed: int) -> np.ndarray:
    """Run steps ``0 .. upto-1`` with random velocities, so step ``upto`` has its usual state."""
    for index in range(upto):
        sample = scheduler.step(_array(seed + index, sample.shape), schedule, index, sample)
    return sample


@contract_property("scheduler", "sigmas fall monotonically to 0; timesteps are sigmas x 1000")
def sigmas_fall_to_zero(make: Make) -> None:
    @given(steps)
    def check(num_steps: int) -> None:
        schedule = make().schedule(num_steps)
        assert isinstance(schedule, Schedule), f"schedule() returned {type(schedule).__name__}"
        assert len(schedule.timesteps) >= num_steps, (
            f"{num_steps} steps gave only {len(schedule.timesteps)} timesteps")
        assert schedule.sigmas[-1] == 0, f"last sigma is {schedule.sigmas[-1]}, expected 0"
        assert np.all(np.diff(schedule.sigmas) <= 0), f"sigmas rise somewhere: {schedule.sigmas}"
        np.testing.assert_allclose(schedule.timesteps, schedule.sigmas[:-1] * 1000, rtol=1e-5, atol=1e-3,
                                   err_msg="timesteps must be the sigmas on the 0..1000 scale")

    check()


@contract_property("scheduler", "a zero velocity leaves the sample unchanged")
def zero_velocity_is_identity(make: Make) -> None:
    @given(steps, shapes, st.integers(0, 2**16))
    def check(num_steps: int, shape: tuple[int, ...], seed: int) -> None:
        scheduler = make()
        schedule = scheduler.schedule(num_steps)
        sample = _array(seed, shape)
        for index in range(len(schedule)):
            out = scheduler.step(np.zeros_like(sample), schedule, index, sample)
            assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == sample.shape, (
                f"step returned {type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}, "
                f"expected float32 {sample.shape}")
            np.testing.assert_allclose(out, sample, atol=1e-6,
                                       err_msg=f"step {index} moved the sample with zero velocity")

    check()


@contract_property("scheduler", "a step is affine in the velocity")
def step_is_affine(make: Make) -> None:
    @given(steps, shapes, st.integers(0, 2**16), st.floats(-2, 2), st.data())
    def check(num_steps: int, shape: tuple[int, ...], seed: int, weight: float, data) -> None:
        scheduler = make()
        schedule = scheduler.schedule(num_steps)
        index = data.draw(st.integers(0, len(schedule) - 1), label="index")
        sample = _advance(scheduler, schedule, index, _array(seed, shape), seed)
        v1, v2 = _array(seed + 101, shape), _array(seed + 202, shape)
        mixed = (weight * v1 + (1 - weight) * v2).astype(np.float32)
        outs = [copy.deepcopy(scheduler).step(v, schedule, index, sample) for v in (v1, v2, mixed)]
        np.testing.assert_allclose(outs[2], weight * outs[0] + (1 - weight) * outs[1],
                                   rtol=1e-4, atol=1e-4, err_msg=f"step {index} is not affine")

    check()


@contract_property("scheduler", "with the exact flow-matching velocity, the trajectory lands on the clean sample")
def exact_velocity_lands_on_clean_sample(make: Make) -> None:
    @given(steps, shapes, st.integers(0, 2**16))
    def check(num_steps: int, shape: tuple[int, ...], seed: int) -> None:
        scheduler = make()
        schedule = scheduler.schedule(num_steps)
        clean, noise = _array(seed, shape), _array(seed + 1, shape)
        velocity = noise - clean  # d/d sigma of (1 - sigma) * clean + sigma * noise
        sample = (1 - schedule.sigmas[0]) * clean + schedule.sigmas[0] * noise
        for index in range(len(schedule)):
            sample = scheduler.step(velocity, schedule, index, sample)
        np.testing.assert_allclose(sample, clean, atol=1e-4,
                                   err_msg="the trajectory's end (x) is not the clean sample (y)")

    check()
