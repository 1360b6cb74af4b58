"""The sigma schedule both flow-matching schedulers share."""

import numpy as np

from plugins.flow_match.config import FlowMatchConfig


def shifted(sigmas: np.ndarray, shift: float) -> np.ndarray:
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def base_sigmas(config: FlowMatchConfig, num_inference_steps: int) -> np.ndarray:
    """The N shifted sigmas of a schedule, float32, from 1 down (0 not included)."""
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if config.spacing == "hunyuanvideo":
        sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1].astype(np.float32)
    else:
        train = np.linspace(1, config.num_train_timesteps, config.num_train_timesteps,
                            dtype=np.float32)[::-1] / config.num_train_timesteps
        train = shifted(train, config.shift)
        timesteps = np.linspace(train[0] * config.num_train_timesteps,
                                train[-1] * config.num_train_timesteps, num_inference_steps)
        sigmas = (timesteps / config.num_train_timesteps).astype(np.float32)
    return shifted(sigmas, config.shift).astype(np.float32)
