"""Writing frames to ``.mp4`` (H.264), ``.gif`` or a folder of PNGs, through PyAV.

Every output is written to a temporary name beside the target and renamed into
place when complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

FORMATS = (".mp4", ".gif", "a folder (no suffix) of .png files")


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 [F, H, W, 3], got {frames.dtype} {tuple(frames.shape)}; "
                         f"pass one video of result.frames, e.g. result.frames[0]")
    return frames


def _encode(frames: np.ndarray, path: Path, codec: str, pix_fmt: str, fps: float,
            container_format: str) -> None:
    import av  # FFmpeg's libraries load only when a video is written

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        if codec == "libx264":
            stream.options = {"crf": "18"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_pngs(frames: np.ndarray, folder: Path) -> None:
    import av

    codec = av.CodecContext.create("png", "w")
    codec.height, codec.width = frames.shape[1:3]
    codec.pix_fmt = "rgb24"
    for index, frame in enumerate(frames):
        packets = codec.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
        (folder / f"frame_{index:04d}.png").write_bytes(b"".join(bytes(p) for p in packets))


def check_output_path(path: str | Path) -> Path:
    """``path`` if ``export_video`` can write it (a known suffix, a folder it can create)."""
    path = Path(path)
    if path.suffix not in ("", ".mp4", ".gif"):
        raise ValueError(f"{path}: unsupported output {path.suffix!r}; write one of {', '.join(FORMATS)}")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(f"{path}: cannot create it ({parent} is not a writable folder)")
    return path


def export_video(frames: np.ndarray, path: str | Path, fps: float = 24) -> Path:
    """Write ``frames`` (uint8 ``[F, H, W, 3]``) to ``path`` and return it.

    ``.mp4`` is H.264 (its sides must be even), ``.gif`` is paletted, a path
    without a suffix becomes a folder of ``frame_0000.png`` ...
    """
    frames, path = check_frames(frames), check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == "":
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            _write_pngs(frames, staging)
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return path
    if path.suffix == ".mp4":
        if frames.shape[1] % 2 or frames.shape[2] % 2:
            raise ValueError(f"H.264 needs even height and width, got {frames.shape[1]}x{frames.shape[2]}")
        codec, pix_fmt, container_format = "libx264", "yuv420p", "mp4"
    else:
        codec, pix_fmt, container_format = "gif", "rgb8", "gif"
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
    try:
        _encode(frames, Path(staging), codec, pix_fmt, fps, container_format)
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)
    return path
