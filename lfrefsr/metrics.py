"""Image quality metrics (SPEC): PSNR on RGB in [0, 1] with no border crop, PSNR on Y (BT.601), SSIM on Y."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# BT.601 luma for RGB in [0, 1] mapped to [16, 235] / 255 (the MATLAB rgb2ycbcr convention of the SR literature).
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


def _as_tensor(image) -> torch.Tensor:
    return torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image).double()


def rgb_to_y(image) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., H, W) luma in [16/255, 235/255]."""
    image = _as_tensor(image)
    red, green, blue = image.unbind(dim=-3)
    return _Y_WEIGHTS[0] * red + _Y_WEIGHTS[1] * green + _Y_WEIGHTS[2] * blue + _Y_OFFSET


def psnr(sr, hr) -> float:
    """PSNR in dB of two images in [0, 1] of the same shape, no border crop."""
    sr, hr = _as_tensor(sr), _as_tensor(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch {tuple(sr.shape)} vs {tuple(hr.shape)}")
    mse = float(((sr - hr) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_y(sr, hr) -> float:
    return psnr(rgb_to_y(sr), rgb_to_y(hr))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel_1d = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel_1d /= kernel_1d.sum()
    return torch.outer(kernel_1d, kernel_1d)[None, None]  # (1, 1, size, size)


def ssim(sr, hr, data_range: float = 1.0) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region) of 2-D images."""
    sr, hr = _as_tensor(sr), _as_tensor(hr)
    window = _gaussian_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    sr, hr = sr[None, None], hr[None, None]  # (1, 1, H, W)
    mu_sr, mu_hr = F.conv2d(sr, window), F.conv2d(hr, window)
    var_sr = F.conv2d(sr * sr, window) - mu_sr**2
    var_hr = F.conv2d(hr * hr, window) - mu_hr**2
    cov = F.conv2d(sr * hr, window) - mu_sr * mu_hr
    ssim_map = ((2 * mu_sr * mu_hr + c1) * (2 * cov + c2)) / ((mu_sr**2 + mu_hr**2 + c1) * (var_sr + var_hr + c2))
    return float(ssim_map.mean())


def ssim_y(sr, hr) -> float:
    return ssim(rgb_to_y(sr), rgb_to_y(hr))
