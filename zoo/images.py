"""Conditioning images: read from a file and checked, resized and normalised as diffusers does.

A file must hold an 8-bit RGB image (a palette without transparency is read as RGB): one
with alpha, a grey one or one of more than 8 bits per channel is refused with the conversion
that makes it usable, since silently dropping alpha or 16 bits to 8 would condition the video
on something the user did not see. At the boundary an image is ``[H, W, 3]`` uint8 (``contracts.check_images``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts import check_images

# PIL modes read as 8-bit RGB (a palette without transparency converts losslessly), and what
# each other mode is, for the error message.
RGB_MODES = ("RGB", "P")
MODE_NAMES = {
    "RGBA": "has an alpha channel", "RGBa": "has an alpha channel", "PA": "has a palette with transparency",
    "LA": "is grey with an alpha channel", "La": "is grey with an alpha channel",
    "L": "is greyscale", "1": "is 1-bit black and white", "RGB;16": "has 16 bits per channel",
    "I;16": "is 16-bit greyscale", "I;16B": "is 16-bit greyscale", "I;16L": "is 16-bit greyscale",
    "I": "is 32-bit integer greyscale", "F": "is 32-bit float greyscale", "CMYK": "is CMYK",
    "YCbCr": "is YCbCr", "LAB": "is Lab", "HSV": "is HSV",
}


def _raw_mode(tile: object) -> str:
    """The raw pixel layout of a PIL tile, e.g. ``RGB;16B`` for a 16-bit PNG that opens as ``RGB``."""
    args = getattr(tile, "args", None)
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else ""


class ImageError(ValueError):
    """An image file that cannot condition a video, with the reason and the fix in one line."""


def load_image(path: str | Path) -> np.ndarray:
    """An image file as 8-bit RGB ``[H, W, 3]``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist" if not path.exists()
                                else f"image {path} is not a file")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode == "P" and "transparency" in image.info:
                mode = "PA"
            if mode == "RGB" and any(";16" in _raw_mode(tile) for tile in image.tile):
                mode = "RGB;16"  # PIL would read 16 bits per channel as 8, silently
            image.load()
            # upright as the file's EXIF orientation says, as diffusers' load_image reads it
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB")) if mode in RGB_MODES else None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"image {path} cannot be read as an image ({type(exc).__name__}: {exc}); "
                         f"give a PNG, JPEG or WebP file") from None
    if pixels is None:
        what = MODE_NAMES.get(mode, f"has pixel mode {mode}")
        raise ImageError(f"image {path} {what}; an image to animate must be 8-bit RGB: convert it first "
                         f"(e.g. `magick {path.name} -alpha off -depth 8 -type TrueColor rgb.png`)")
    return check_images(pixels[None], name=f"image {path}")[0]


def as_image_batch(image: str | Path | np.ndarray, batch: int) -> np.ndarray:
    """One image (a file, or ``[H, W, 3]`` uint8) for every item, or ``[B, H, W, 3]`` one per item."""
    if isinstance(image, str | Path):
        image = load_image(image)
    array = np.asarray(image)
    if array.ndim == 3:
        array = array[None]
    array = check_images(array, "image")
    if array.shape[0] == 1:
        return np.repeat(array, batch, axis=0)
    if array.shape[0] != batch:
        raise ImageError(f"image: {array.shape[0]} images for {batch} prompts; give one, or one per prompt")
    return array


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 resized to ``height x width`` with Lanczos, as diffusers' ``VideoProcessor``
    resizes a PIL image (the whole image, aspect ratio not kept)."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.LANCZOS))


def to_video(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """``[B, H, W, 3]`` uint8 -> one-frame videos ``[B, 3, 1, height, width]`` in [-1, 1], float32."""
    images = check_images(images)
    unit = np.stack([resize(image, height, width) for image in images]).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((np.float32(2) * unit - np.float32(1)).transpose(0, 3, 1, 2)[:, :, None])
