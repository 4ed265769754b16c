"""Separable Gaussian filtering, shared by CC-Net's input normalisation and SS-Net's mask-weighted blending; the
robust penalties of the fits through the LR camera (``refine_flow``, the light field's ``_refine_disparity``)."""

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


def _band(kernel: torch.Tensor, block: int) -> torch.Tensor:
    """(block + 2r, block): column j holds ``kernel`` at rows j .. j + 2r, so ``rows @ band`` filters ``block``
    outputs from ``block + 2r`` inputs."""
    offset = torch.arange(block + kernel.numel() - 1, device=kernel.device)[:, None] - torch.arange(
        block, device=kernel.device)[None]  # (block + 2r, block): input index minus output index
    inside = (offset >= 0) & (offset < kernel.numel())
    return torch.where(inside, kernel[offset.clamp(0, kernel.numel() - 1)], 0.0)


def separable_blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H, W) float32: ``kernel`` (2r + 1,) along columns, then rows; replicate padding.

    Each pass is a banded matrix product: the outputs in blocks of ``block`` (16 or 32) rows (or columns), each
    block one product of its ``block + 2r`` inputs with the same band matrix, read in place through overlapping
    strided views (no unfolded copy). Float32 and outside autocast: oneDNN's bf16 depthwise convolution can run for
    minutes on a CPU. The products beat two depthwise convolutions (one image row, then column, per channel) on the
    CPU although the band's zeros make 2.4x the multiply-adds (the bench's FLOP counter counts them), and agree with
    them to 5e-7 (benchmarks/README.md, "Kernels and engine").
    """
    n, c, h, w = image.shape
    r = (kernel.numel() - 1) // 2
    block = 16 * max(1, math.ceil(r / 16))  # 49 taps: 32; SS-Net's blending (sigma 3, 19 taps): 16
    span = block + 2 * r  # inputs per block of outputs
    blocks_h, blocks_w = -(-h // block), -(-w // block)
    with torch.autocast(image.device.type, enabled=False):
        band = _band(kernel.to(device=image.device, dtype=torch.float32), block)  # (span, block)
        padded = F.pad(image.float(), (r, r, r, r), mode="replicate")  # (N, C, H+2r, W+2r)
        # zeros below and right so that every block of outputs has its whole span; their outputs are cropped
        padded = F.pad(padded, (0, blocks_w * block - w, 0, blocks_h * block - h))  # (N, C, Hp, Wp)
        hp, wp = padded.shape[-2:]
        planes = padded.permute(2, 0, 1, 3).reshape(hp, n * c * wp)  # (Hp, N*C*Wp): one copy, rows outermost
        spans = planes.as_strided((blocks_h, span, n * c * wp), (block * n * c * wp, n * c * wp, 1))
        cols = torch.bmm(band.t().expand(blocks_h, -1, -1), spans)  # (blocks_h, block, N*C*Wp)
        cols = cols.view(blocks_h * block, n * c, wp)[:h].reshape(h * n * c, wp)  # (H*N*C, Wp): cropped rows
        spans = cols.as_strided((blocks_w, h * n * c, span), (block, wp, 1))  # (blocks_w, H*N*C, span) overlapping
        rows = torch.bmm(spans, band.expand(blocks_w, -1, -1))  # (blocks_w, H*N*C, block)
        out = rows.view(blocks_w, h, n, c, block).permute(2, 3, 1, 0, 4)  # (N, C, H, blocks_w, block)
        return out.reshape(n, c, h, blocks_w * block)[..., :w]  # (N, C, H, W) view of the cropped columns


def charbonnier(residual: torch.Tensor, eps: float) -> torch.Tensor:
    """The mean Charbonnier penalty sqrt(r^2 + eps^2) of ``residual`` (any shape) -> a scalar: quadratic within the
    noise ``eps``, linear beyond, so a few pixels no warp explains (occlusions, the codec) do not dominate a fit."""
    return torch.sqrt(residual * residual + eps * eps).mean()


def total_variation(field: torch.Tensor) -> torch.Tensor:
    """The smoothed total variation of ``field`` (..., H, W) -> a scalar: the mean Charbonnier size (epsilon 0.01) of
    its horizontal plus its vertical differences, which keeps a fitted flow or disparity's edges."""
    dx = field[..., :, 1:] - field[..., :, :-1]  # (..., H, W - 1)
    dy = field[..., 1:, :] - field[..., :-1, :]  # (..., H - 1, W)
    return torch.sqrt(dx * dx + 1e-4).mean() + torch.sqrt(dy * dy + 1e-4).mean()
