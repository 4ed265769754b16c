"""Video input through PyAV, and folders of frames sorted by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lfrefsr.errors import InputError
from lfrefsr.io.images import image_size, is_image_name, read_image


def frame_files(folder: Path) -> list[Path]:
    """Image files of a folder sorted by name; subfolders and non-image files are ignored."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_name(p.name)), key=lambda p: p.name)


def _open(path: Path):
    import av

    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"not a readable video ({type(exc).__name__}: {exc})", path) from None
    if not container.streams.video:
        container.close()
        raise InputError("no video stream in the file", path)
    return container


def probe(src: str | Path, max_frames: int | None = None) -> tuple[int | None, tuple[int, int]]:
    """(frame count if known, (height, width)) without decoding every frame."""
    src = Path(src)
    if src.is_dir():
        files = frame_files(src)[:max_frames]
        if not files:
            raise InputError("no image frames in the folder", src)
        sizes = {image_size(f): f for f in files}
        if len(sizes) > 1:
            (first, _), (other, path) = list(sizes.items())[:2]
            raise InputError(f"frames of different sizes ({first[0]}x{first[1]} and {other[0]}x{other[1]})", path)
        return len(files), next(iter(sizes))
    container = _open(src)
    try:
        stream = container.streams.video[0]
        count = stream.frames or None
        height, width = stream.codec_context.height, stream.codec_context.width
    finally:
        container.close()
    if not height or not width:
        raise InputError("video stream without a frame size", src)
    if count is not None and max_frames is not None:
        count = min(count, max_frames)
    return count, (height, width)


def iter_frames(src: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames (3, H, W), uint8, or uint16 for high-bit-depth streams."""
    src = Path(src)
    if src.is_dir():
        for path in frame_files(src)[:max_frames]:
            yield read_image(path)
        return
    container = _open(src)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        deep = any(tag in (stream.codec_context.pix_fmt or "") for tag in ("10", "12", "16"))
        count = 0
        try:
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb48le" if deep else "rgb24")  # (H, W, 3)
                yield np.ascontiguousarray(rgb.transpose(2, 0, 1))  # (3, H, W)
                count += 1
                if max_frames is not None and count >= max_frames:
                    break
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot decode the video ({type(exc).__name__}: {exc})", src) from None
    finally:
        container.close()
