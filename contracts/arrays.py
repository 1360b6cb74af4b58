"""Checks for the numpy arrays that cross a component boundary.

Each check names the argument, the layout it expected and what it got, so an
error reads like ``latents: expected [B, C, T, h, w] (5 dims), got shape (2, 16, 8)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class ContractError(ValueError):
    """Data at a component boundary does not have the layout the contract promises."""


def check_array(
    value: object,
    name: str,
    layout: Sequence[str],
    dtype: type | np.dtype | None = np.float32,
) -> np.ndarray:
    """Return ``value`` as an array with ``len(layout)`` dims, cast to ``dtype`` if given.

    Floating inputs of another precision are converted; anything that is not
    numeric, or has the wrong number of dims, is a ``ContractError``.
    """
    expected = f"[{', '.join(layout)}]"
    try:
        array = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure gets the same message
        raise ContractError(f"{name}: expected an array {expected}, got {type(value).__name__}") from exc
    if array.ndim != len(layout):
        raise ContractError(
            f"{name}: expected {expected} ({len(layout)} dims), got shape {tuple(array.shape)}"
        )
    if array.dtype.kind not in "biuf":
        raise ContractError(f"{name}: expected numbers, got dtype {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return array


def check_video(video: object, name: str = "video") -> np.ndarray:
    """A video ``[B, 3, F, H, W]`` in float32 (values in [-1, 1] by convention)."""
    array = check_array(video, name, ("B", "3", "F", "H", "W"))
    if array.shape[1] != 3:
        raise ContractError(f"{name}: expected 3 colour channels in dim 1 of [B, 3, F, H, W], "
                            f"got shape {tuple(array.shape)}")
    return array


def check_latents(latents: object, channels: int | None = None, name: str = "latents") -> np.ndarray:
    """Latents ``[B, C, T, h, w]`` in float32, with ``C == channels`` when given."""
    array = check_array(latents, name, ("B", "C", "T", "h", "w"))
    if channels is not None and array.shape[1] != channels:
        raise ContractError(f"{name}: expected {channels} channels in dim 1 of [B, C, T, h, w], "
                            f"got shape {tuple(array.shape)}")
    return array


def check_batch_vector(value: object, batch: int, name: str) -> np.ndarray:
    """A per-item value ``[B]`` (a scalar is broadcast to the batch)."""
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0:
        array = np.full((batch,), array, dtype=np.float32)
    if array.shape != (batch,):
        raise ContractError(f"{name}: expected a scalar or [B] with B={batch}, "
                            f"got shape {tuple(array.shape)}")
    return array


def check_images(images: object, name: str = "images") -> np.ndarray:
    """Conditioning images ``[B, H, W, 3]``: 8-bit RGB, as decoded from an image file.

    An encoder or the pipeline resizes and normalises them itself, each as its reference
    does, so the boundary carries the pixels unchanged.
    """
    array = np.asarray(images)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ContractError(f"{name}: expected RGB images [B, H, W, 3], got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ContractError(f"{name}: expected 8-bit pixels (uint8), got dtype {array.dtype}")
    return array


def check_image_latents(image: object, latents: np.ndarray, name: str = "image") -> np.ndarray:
    """A conditioning image's latents ``[B, C, 1, h, w]``, matching ``latents [B, C, T, h, w]``
    in every dim but T."""
    array = check_latents(image, name=name)
    expected = (latents.shape[0], latents.shape[1], 1, *latents.shape[3:])
    if array.shape != expected:
        raise ContractError(f"{name}: expected the image's latents [B, C, 1, h, w] = {expected} to match "
                            f"latents {tuple(latents.shape)}, got shape {tuple(array.shape)}")
    return array
