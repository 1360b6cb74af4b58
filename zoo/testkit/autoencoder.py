"""Contract properties of autoencoders.

Frame layout: a causal autoencoder (``config.causal``) compresses the first frame
alone and then ``temporal_compression`` frames per latent frame, so ``t*k + 1``
frames give ``k + 1`` latent frames; any other autoencoder maps ``t*k`` frames to
``k``. Height and width shrink by ``spatial_compression``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from zoo.testkit.core import Make, contract_property

seeds = st.integers(0, 2**16)
STILL_TOLERANCE = 1e-3  # relative to the output's scale


def frame_counts(config, latent_frames: int) -> int:
    """How many video frames decode from (and encode to) ``latent_frames`` latent frames."""
    if getattr(config, "causal", False):
        return config.temporal_compression * (latent_frames - 1) + 1
    return config.temporal_compression * latent_frames


def _video(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _check_array(name: str, array: object, shape: tuple[int, ...]) -> np.ndarray:
    assert isinstance(array, np.ndarray), f"{name}: expected a numpy array, got {type(array).__name__}"
    assert array.shape == shape, f"{name}: expected shape {shape}, got {array.shape}"
    assert array.dtype == np.float32, f"{name}: expected float32, got {array.dtype}"
    assert np.isfinite(array).all(), f"{name}: holds non-finite values"
    return array


def _close(actual: np.ndarray, expected: np.ndarray, what: str, tolerance: float) -> None:
    scale = max(float(np.abs(expected).max()), 1e-3)
    error = float(np.abs(actual - expected).max())
    assert error <= tolerance * scale, f"{what}: max abs difference {error:.3g} at output scale {scale:.3g}"


@contract_property("autoencoder", "shapes follow the declared compression; decode(encode(x)) has x's shape")
def shapes_follow_compression(make: Make) -> None:
    autoencoder = make()
    config = autoencoder.config
    s = config.spatial_compression

    @given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 2), st.integers(1, 2), seeds)
    def check(batch: int, latent_frames: int, height: int, width: int, seed: int) -> None:
        video = _video(seed, (batch, 3, frame_counts(config, latent_frames), height * s, width * s))
        latents = autoencoder.encode(video)
        _check_array("encode(video)", latents,
                     (batch, config.latent_channels, latent_frames, height, width))
        _check_array("decode(encode(video))", autoencoder.decode(latents), video.shape)

    check()


@contract_property("autoencoder", "a causal autoencoder keeps a still video still")
def still_video_stays_still(make: Make) -> None:
    """With the past padded by repeating the first frame, a video that never moves
    encodes to latents that never move, and those decode to frames that never move.
    Holds for causal autoencoders only; for others there is nothing to check.

    Frames are at least two latents wide and high: a group norm over a 1x1 map of a
    random network can be nearly constant, and dividing by its tiny deviation blows
    rounding up to 1e-3 of scale (diffusers' model too). A look-ahead or a zero-padded
    past changes the output by its whole scale, far above the tolerance.
    """
    autoencoder = make()
    config = autoencoder.config
    if not getattr(config, "causal", False):
        return
    s = config.spatial_compression

    @given(st.integers(2, 3), st.integers(2, 3), st.integers(2, 3), seeds)
    def check(latent_frames: int, height: int, width: int, seed: int) -> None:
        image = _video(seed, (1, 3, 1, height * s, width * s))
        latents = autoencoder.encode(np.repeat(image, frame_counts(config, latent_frames), axis=2))
        _close(latents, np.repeat(latents[:, :, :1], latent_frames, axis=2),
               "latent frames of a still video vs its first latent frame", STILL_TOLERANCE)
        frames = autoencoder.decode(np.repeat(latents[:, :, :1], latent_frames, axis=2))
        _close(frames, np.repeat(frames[:, :, :1], frames.shape[2], axis=2),
               "frames decoded from still latents vs the first frame", STILL_TOLERANCE)

    check()
