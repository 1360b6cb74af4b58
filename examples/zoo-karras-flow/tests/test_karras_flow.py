import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

import zoo


@pytest.mark.zoo_component("scheduler", "flow-match-euler-karras", shift=5.0)
def test_contract(zoo_property, zoo_make):
    zoo_property.check(zoo_make)


@pytest.mark.parametrize("steps", [1, 2, 7, 30])
@pytest.mark.parametrize("shift", [1.0, 5.0, 7.0])
def test_equals_diffusers_with_karras_sigmas(steps, shift):
    ours = zoo.load_component("scheduler", "flow-match-euler-karras", shift=shift)
    reference = FlowMatchEulerDiscreteScheduler(shift=shift, use_karras_sigmas=True)
    reference.set_timesteps(sigmas=list(np.linspace(1.0, 0.0, steps + 1)[:-1]))
    schedule = ours.schedule(steps)
    np.testing.assert_allclose(schedule.sigmas, reference.sigmas.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(schedule.timesteps, reference.timesteps.numpy(), rtol=1e-5, atol=1e-3)
    rng = np.random.default_rng(steps)
    sample = rng.standard_normal((1, 4, 2, 3, 3)).astype(np.float32)
    expected = torch.from_numpy(sample)
    for index, t in enumerate(reference.timesteps):
        velocity = rng.standard_normal(sample.shape).astype(np.float32)
        sample = ours.step(velocity, schedule, index, sample)
        expected = reference.step(torch.from_numpy(velocity), t, expected).prev_sample
        np.testing.assert_allclose(sample, expected.numpy(), rtol=1e-5, atol=1e-5)
