"""Real photographs that texture the synthetic scenes: those scikit-image ships in its wheel, or a folder of images.

Every image comes back as a float32 tensor (3, H, W) in [0, 1]: grayscale is repeated to RGB, alpha is dropped.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from lfrefsr.errors import InputError
from lfrefsr.io.images import is_image_name

#: Photographs (and a few natural textures) bundled with scikit-image; ones missing from an install are skipped.
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right", "immunohistochemistry",
    "hubble_deep_field", "retina", "colorwheel", "brick", "grass", "gravel", "camera", "coins", "text", "page",
    "cat", "moon", "clock", "cell",
)  # fmt: skip


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """Image array (H, W), (H, W, 3) or (H, W, 4) of any integer, bool or float dtype -> float32 (3, H, W) in [0, 1]."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        image = array.astype(np.float32) / np.iinfo(array.dtype).max
    else:  # bool or float: already on a [0, 1] scale
        image = np.clip(array.astype(np.float32), 0.0, 1.0)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # RGBA -> RGB
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (H, W, 3) -> (3, H, W)


def read_photo(path: str | Path) -> torch.Tensor:
    """One image file -> float32 (3, H, W) in [0, 1], through the package's image reader (16-bit kept)."""
    from lfrefsr.io.images import read_image
    from lfrefsr.protocol import to_float

    return to_float(read_image(path))


@functools.lru_cache(maxsize=1)
def _skimage_photos() -> tuple[torch.Tensor, ...]:
    """All loadable scikit-image photographs, loaded once. Shared between callers: never mutate them."""
    import skimage.data

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            if name.startswith("motorcycle_"):
                left, right, _ = skimage.data.stereo_motorcycle()
                array = left if name.endswith("left") else right
            else:
                array = getattr(skimage.data, name)()
        except Exception:  # not shipped in this install (or would need a download): skip it
            continue
        photos.append(to_tensor(array))
    return tuple(photos)


def _folder_photos(folder: Path):
    """Images of ``folder`` (recursive, sorted by relative path), read lazily one by one."""
    if not folder.is_dir():
        raise InputError("photo source is neither 'skimage' nor a folder", folder)
    files = sorted(
        (path for path in folder.rglob("*") if is_image_name(path) and path.is_file()),
        key=lambda path: path.relative_to(folder).as_posix(),
    )
    return (read_photo(path) for path in files)


def load_photos(
    source: str | Path | None = None, *, min_size: int = 128, max_images: int | None = None
) -> list[torch.Tensor]:
    """Real photographs as float32 tensors (3, H, W) in [0, 1].

    ``source``: ``None`` or ``"skimage"`` for the photographs inside scikit-image's wheel (no network), or a folder
    whose ``.png/.jpg/.jpeg/.bmp/.tif`` files are read recursively, sorted by relative path.
    Images whose shorter side is below ``min_size`` are skipped; at most ``max_images`` are returned (in order).
    The scikit-image tensors are cached and shared between calls: treat them as read-only (``.clone()`` to edit).
    """
    candidates = _skimage_photos() if source is None or str(source) == "skimage" else _folder_photos(Path(source))
    photos = []
    for photo in candidates:
        if max_images is not None and len(photos) >= max_images:
            break
        if min(photo.shape[-2:]) >= min_size:
            photos.append(photo)
    if not photos:
        raise InputError(f"no photographs of at least {min_size} pixels found", None if source is None else source)
    return photos
