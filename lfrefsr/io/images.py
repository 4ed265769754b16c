"""Reading image files into RGB arrays (C, H, W) of uint8 or uint16, with a clear error for anything else.

Grayscale is repeated to RGB, alpha is dropped, 16-bit stays 16-bit, floating-point images in [0, 1] become uint16.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lfrefsr.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def is_image_name(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) from the file header only; refuses non-image files."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except Exception as exc:  # PIL raises many types for non-image data
        raise InputError(f"not a readable image ({type(exc).__name__})", path) from None
    return height, width


def _verify_complete(path: Path) -> None:
    """Decode fully with PIL, which (unlike OpenCV) fails on truncated files instead of padding them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
    except Exception as exc:
        raise InputError(f"truncated or corrupted image ({type(exc).__name__}: {exc})", path) from None


def to_rgb(array: np.ndarray, path=None) -> np.ndarray:
    """(H, W), (H, W, 1|2|3|4) RGB-ordered array -> (3, H, W) uint8 or uint16."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image shape {array.shape}", path)
    channels = array.shape[2]
    if channels in (1, 2):  # gray or gray + alpha
        array = np.repeat(array[:, :, :1], 3, axis=2)
    elif channels == 4:  # RGBA: alpha dropped, colours kept
        array = array[:, :, :3]
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise InputError("image holds NaN or inf values", path)
        if array.min() < 0 or array.max() > 1:
            raise InputError("floating-point image outside [0, 1]", path)
        array = np.round(array * 65535).astype(np.uint16)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype not in (np.uint8, np.uint16):
        raise InputError(f"unsupported pixel type {array.dtype}", path)
    return np.ascontiguousarray(array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)


def read_image(path: str | Path) -> np.ndarray:
    """Any supported image file -> RGB (3, H, W) uint8 or uint16."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path)
    _verify_complete(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR(A) order, keeps 16-bit depth
    if array is None:
        raise InputError("not a readable image", path)
    if array.ndim == 3 and array.shape[2] >= 3:
        array = array[:, :, [2, 1, 0] + ([3] if array.shape[2] == 4 else [])]  # BGR(A) -> RGB(A)
    return to_rgb(array, path)


def write_image(path: str | Path, image: np.ndarray) -> None:
    """RGB (3, H, W) uint8/uint16 -> PNG (or any OpenCV format by suffix), written atomically."""
    from lfrefsr.io.atomic import atomic_path

    path = Path(path)
    bgr = np.ascontiguousarray(image.transpose(1, 2, 0)[:, :, ::-1])  # (C, H, W) RGB -> (H, W, C) BGR
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(path.suffix or ".png", bgr)
        if not ok:
            raise InputError("could not encode image", path)
        tmp.write_bytes(encoded.tobytes())
