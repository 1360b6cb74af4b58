"""Flow-matching Heun: diffusers' ``FlowMatchHeunDiscreteScheduler`` in numpy.

A schedule of N steps has 2N - 1 timesteps, as diffusers lays them out: each
step but the last is an Euler predictor (even index) followed by a corrector
(odd index) that averages the two velocities. The predictor's state is kept
between the two calls, so a corrector must follow its predictor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts import Schedule
from plugins.flow_match.config import FlowMatchConfig
from plugins.flow_match.sigmas import base_sigmas


class FlowMatchHeun:
    def __init__(self, config: FlowMatchConfig, weights: Path | None = None) -> None:
        self.config = config
        self._predictor: tuple[int, np.ndarray, np.ndarray] | None = None  # index, sample, velocity

    def schedule(self, num_inference_steps: int) -> Schedule:
        sigmas = np.append(base_sigmas(self.config, num_inference_steps), np.float32(0.0))
        timesteps = sigmas[:-1] * np.float32(self.config.num_train_timesteps)
        timesteps = np.concatenate([timesteps[:1], np.repeat(timesteps[1:], 2)])
        sigmas = np.concatenate([sigmas[:1], np.repeat(sigmas[1:-1], 2), sigmas[-1:]])
        return Schedule(timesteps=timesteps, sigmas=sigmas)

    def step(self, velocity: np.ndarray, schedule: Schedule, index: int,
             sample: np.ndarray) -> np.ndarray:
        sample32 = sample.astype(np.float32)
        if index % 2 == 0:
            dt = schedule.sigmas[index + 1] - schedule.sigmas[index]
            self._predictor = (index, sample32, velocity)
            return (sample32 + velocity * dt).astype(velocity.dtype)
        if self._predictor is None or self._predictor[0] != index - 1:
            raise RuntimeError(f"flow-match-heun: step {index} is a corrector and must follow "
                               f"the predictor step {index - 1} of the same trajectory")
        _, start, first_velocity = self._predictor
        self._predictor = None
        dt = schedule.sigmas[index] - schedule.sigmas[index - 1]
        return (start + 0.5 * (first_velocity + velocity) * dt).astype(velocity.dtype)
