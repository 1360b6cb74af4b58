"""Flow-matching Euler: diffusers' ``FlowMatchEulerDiscreteScheduler`` in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts import Schedule
from plugins.flow_match.config import FlowMatchConfig
from plugins.flow_match.sigmas import base_sigmas


class FlowMatchEuler:
    """``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * v_i``."""

    def __init__(self, config: FlowMatchConfig, weights: Path | None = None) -> None:
        self.config = config

    def schedule(self, num_inference_steps: int) -> Schedule:
        sigmas = base_sigmas(self.config, num_inference_steps)
        timesteps = sigmas * np.float32(self.config.num_train_timesteps)
        return Schedule(timesteps=timesteps, sigmas=np.append(sigmas, np.float32(0.0)))

    def step(self, velocity: np.ndarray, schedule: Schedule, index: int,
             sample: np.ndarray) -> np.ndarray:
        dt = schedule.sigmas[index + 1] - schedule.sigmas[index]
        out = sample.astype(np.float32) + dt * velocity
        return out.astype(velocity.dtype)
