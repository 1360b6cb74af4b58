"""Karras sigmas for flow matching; steps are plain Euler."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts import Schedule
from zoo_karras_flow import KarrasFlowConfig


class KarrasFlowEuler:
    def __init__(self, config: KarrasFlowConfig, weights: Path | None = None) -> None:
        self.config = config

    def schedule(self, num_inference_steps: int) -> Schedule:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        shift, rho = self.config.shift, self.config.rho
        linear = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1].astype(np.float32)
        shifted = shift * linear / (1 + (shift - 1) * linear)
        high, low = float(shifted[0]) ** (1 / rho), float(shifted[-1]) ** (1 / rho)
        ramp = np.linspace(0, 1, num_inference_steps)
        sigmas = ((high + ramp * (low - high)) ** rho).astype(np.float32)
        return Schedule(timesteps=sigmas * np.float32(self.config.num_train_timesteps),
                        sigmas=np.append(sigmas, np.float32(0.0)))

    def step(self, velocity: np.ndarray, schedule: Schedule, index: int,
             sample: np.ndarray) -> np.ndarray:
        dt = schedule.sigmas[index + 1] - schedule.sigmas[index]
        return (sample.astype(np.float32) + dt * velocity).astype(velocity.dtype)
