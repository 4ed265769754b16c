"""The x8 protocol (SPEC "Conventions"): crop HR to a multiple of the scale, bicubic-downsample with antialiasing.

All functions take float tensors in [0, 1] shaped (..., C, H, W) and work for any scale >= 2 and any image size.
LR images are quantised to the store's integer dtype like a real capture; ``quantize`` does that step.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr.errors import InputError


def check_scale(scale: int, hr_hw: tuple[int, int], path=None) -> None:
    """A scale below 2, or one that leaves no LR pixel, is refused with one line."""
    if int(scale) != scale or scale < 2:
        raise InputError(f"scale must be an integer >= 2, got {scale}", path)
    height, width = hr_hw
    if scale > min(height, width):
        raise InputError(f"scale {scale} is larger than the image ({height}x{width})", path)


def crop_to_multiple(hr, scale: int):
    """Crop the last two axes to a multiple of ``scale`` (top-left anchored). Works on numpy and torch."""
    height, width = hr.shape[-2], hr.shape[-1]
    return hr[..., : height - height % scale, : width - width % scale]


def _as_batch(image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    lead = tuple(image.shape[:-3])
    return image.reshape(-1, *image.shape[-3:]), lead  # (N, C, H, W)


def downsample(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """LR = antialiased bicubic downsampling of the cropped HR by ``scale`` (MATLAB ``imresize`` equivalent)."""
    hr = crop_to_multiple(hr, scale)
    batch, lead = _as_batch(hr)
    height, width = batch.shape[-2:]
    lr = F.interpolate(
        batch, size=(height // scale, width // scale), mode="bicubic", antialias=True, align_corners=False
    )
    return lr.reshape(*lead, *lr.shape[-3:])


def upsample(lr: torch.Tensor, scale: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubic upsampling by ``scale`` (or to ``size``), clamped to [0, 1]."""
    batch, lead = _as_batch(lr)
    height, width = batch.shape[-2:]
    size = size or (height * scale, width * scale)
    hr = F.interpolate(batch, size=size, mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
    return hr.reshape(*lead, *hr.shape[-3:])


def blur(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The reference as the LR views see it: downsampled by the protocol and upsampled back (``_blurry``)."""
    return upsample(downsample(hr, scale), scale, size=tuple(crop_to_multiple(hr, scale).shape[-2:]))


def max_value(dtype) -> int:
    return int(np.iinfo(np.dtype(dtype)).max)


def to_float(array, dtype=None) -> torch.Tensor:
    """Integer image array (numpy or torch) -> float32 tensor in [0, 1]."""
    dtype = np.dtype(dtype or (array.dtype if isinstance(array, np.ndarray) else np.uint8))
    tensor = torch.as_tensor(np.asarray(array).astype(np.float32) if isinstance(array, np.ndarray) else array)
    return tensor.float() / max_value(dtype)


def quantize(image: torch.Tensor, dtype=np.uint8) -> np.ndarray:
    """Float tensor in [0, 1] -> integer numpy array of ``dtype`` (round half to even, clipped)."""
    peak = max_value(dtype)
    return (image.detach().float().clamp(0.0, 1.0) * peak).round().cpu().numpy().astype(dtype)


def stored_lr(hr: torch.Tensor, scale: int, dtype=np.uint8) -> torch.Tensor:
    """Float HR (..., C, H, W) -> the float LR image as a store would hold it: downsampled, quantised to ``dtype``."""
    return to_float(quantize(downsample(hr, scale), dtype), dtype)


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Integer HR array (..., C, H, W) -> integer LR array of the same dtype, by the protocol."""
    return quantize(downsample(to_float(hr), scale), hr.dtype)
