"""Separable Gaussian filtering, shared by CC-Net's input normalisation and SS-Net's mask-weighted blending."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """(2r + 1,) float32 taps of a Gaussian of ``sigma`` pixels, radius r = ceil(3 sigma) (at least 1), sum 1."""
    radius = max(1, int(math.ceil(3 * sigma)))
    coords = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def separable_blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W) float32: ``kernel`` (2r + 1,) along rows, then columns; replicate padding.

    Float32 and outside autocast: oneDNN's bf16 depthwise convolution can run for minutes on CPU (measured: >100 s
    for a 64x64 image against 2 ms in float32). Each pass is a depthwise convolution with one image row (then one
    image column) per channel: oneDNN vectorises a depthwise kernel across channels, so 3 channels left most of each
    vector idle. At 560 x 560 RGB per 49-tap pass: rows 0.9 ms and columns 1.5 ms, against 3.0 and 3.5 ms as a
    3-channel depthwise convolution in either layout. The result is the same to the bit.
    """
    n, c, h, w = image.shape
    r = (kernel.numel() - 1) // 2
    with torch.autocast(image.device.type, enabled=False):
        k = kernel.to(device=image.device, dtype=torch.float32)
        padded = F.pad(image.float(), (r, r, r, r), mode="replicate").contiguous()  # (N, C, H+2r, W+2r)
        rows = padded.view(1, n * c * (h + 2 * r), 1, w + 2 * r)  # (1, N*C*(H+2r), 1, W+2r): a row per channel
        rows = F.conv2d(rows, k.view(1, 1, 1, -1).expand(rows.shape[1], 1, 1, -1), groups=rows.shape[1])
        # (1, N*C*(H+2r), 1, W) -> (H+2r, N*C*W) in memory = (1, N*C*W, H+2r, 1) channels-last: a column per channel
        cols = rows.view(n * c, h + 2 * r, w).transpose(0, 1).reshape(1, h + 2 * r, 1, n * c * w).permute(0, 3, 1, 2)
        weight = k.view(1, 1, -1, 1).expand(n * c * w, 1, -1, 1).contiguous(memory_format=torch.channels_last)
        cols = F.conv2d(cols, weight, groups=n * c * w)  # (1, N*C*W, H, 1), channels-last
        return cols.permute(0, 2, 3, 1).reshape(h, n, c, w).permute(1, 2, 0, 3)  # (H, N, C, W) -> (N, C, H, W) view
