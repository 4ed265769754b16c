"""Middlebury ``.flo`` and ``.pfm`` readers and writers.

``.flo``: magic float 202021.25, int32 width, int32 height, then (H, W, 2) float32 little-endian, row-major.
``.pfm``: header ``Pf`` (1 channel) or ``PF`` (3), ``W H``, scale (negative = little-endian), rows bottom-up.
Flows are returned as (2, H, W) float32 (channel 0 = x), disparities as (H, W) float32, top row first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lfrefsr.errors import InputError
from lfrefsr.io.atomic import atomic_path

FLO_MAGIC = 202021.25
_MAX_SIDE = 1 << 16  # larger sides mean a corrupted header, not a real flow field


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} ({exc.strerror})", path) from None


def read_flo(path: str | Path) -> np.ndarray:
    path = Path(path)
    data = _read_bytes(path, "flow file")
    if len(data) < 12:
        raise InputError("not a .flo file (shorter than its header)", path)
    magic = np.frombuffer(data, "<f4", 1, 0)[0]
    if magic != FLO_MAGIC:
        raise InputError(f"not a .flo file (magic {magic!r}, expected {FLO_MAGIC})", path)
    width, height = (int(x) for x in np.frombuffer(data, "<i4", 2, 4))
    if not (0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE):
        raise InputError(f"malformed .flo header (size {width}x{height})", path)
    expected = 12 + height * width * 2 * 4
    if len(data) != expected:
        raise InputError(f"malformed .flo file ({len(data)} bytes, expected {expected} for {width}x{height})", path)
    flow = np.frombuffer(data, "<f4", height * width * 2, 12).reshape(height, width, 2)  # (H, W, 2)
    return np.ascontiguousarray(flow.transpose(2, 0, 1)).astype(np.float32)  # (2, H, W)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    flow = np.asarray(flow, dtype="<f4")
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"flow must be (2, H, W), got {flow.shape}")
    _, height, width = flow.shape
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(header + np.ascontiguousarray(flow.transpose(1, 2, 0)).tobytes())  # (H, W, 2)


def read_pfm(path: str | Path) -> np.ndarray:
    """-> (H, W) float32 for ``Pf``, (3, H, W) for ``PF``; top row first."""
    path = Path(path)
    data = _read_bytes(path, "PFM file")
    tokens, offset = [], 0
    while len(tokens) < 4:  # header: kind, width, height, scale, separated by whitespace
        while offset < len(data) and data[offset : offset + 1].isspace():
            offset += 1
        start = offset
        while offset < len(data) and not data[offset : offset + 1].isspace():
            offset += 1
        if start == offset:
            raise InputError("malformed PFM header", path)
        tokens.append(data[start:offset].decode("ascii", "replace"))
    offset += 1  # exactly one whitespace byte ends the header
    kind, channels = tokens[0], {"Pf": 1, "PF": 3}.get(tokens[0])
    if channels is None:
        raise InputError(f"not a PFM file (header {kind!r})", path)
    try:
        width, height, scale = int(tokens[1]), int(tokens[2]), float(tokens[3])
    except ValueError:
        raise InputError("malformed PFM header", path) from None
    if not (0 < width < _MAX_SIDE and 0 < height < _MAX_SIDE) or scale == 0:
        raise InputError(f"malformed PFM header (size {width}x{height}, scale {scale})", path)
    count = width * height * channels
    if len(data) - offset < count * 4:
        raise InputError("truncated PFM file", path)
    dtype = "<f4" if scale < 0 else ">f4"
    values = np.frombuffer(data, dtype, count, offset).astype(np.float32)
    image = values.reshape(height, width, channels)[::-1]  # (H, W, C), rows stored bottom-up
    image = np.ascontiguousarray(image.transpose(2, 0, 1))  # (C, H, W)
    return image[0] if channels == 1 else image


def write_pfm(path: str | Path, image: np.ndarray) -> None:
    image = np.asarray(image, dtype="<f4")
    if image.ndim == 2:
        kind, rows = "Pf", image[:, :, None]  # (H, W, 1)
    elif image.ndim == 3 and image.shape[0] == 3:
        kind, rows = "PF", image.transpose(1, 2, 0)  # (H, W, 3)
    else:
        raise ValueError(f"PFM holds (H, W) or (3, H, W), got {image.shape}")
    height, width = rows.shape[:2]
    header = f"{kind}\n{width} {height}\n-1.0\n".encode("ascii")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(header + np.ascontiguousarray(rows[::-1]).tobytes())
