"""Sliding-window synthesis (RefSR-Net section 4): every overlapping p x p LR patch and its reference patch give a
(p*s) x (p*s) SS-Net prediction; overlapping predictions are blended by plain averaging or by the paper's
mask-weighted averaging (M(0) smoothed by a Gaussian, sigma 3).

Reference patches (``ref_patches``):
    ``shift`` (the paper): the reference patch is cut around the match of the patch's centre LR pixel: one
        displacement per patch.
    ``warp``: the reference is warped once by the dense flow interpolated from every LR pixel's match, and each
        patch takes the warped reference at its own place (denser correspondences).

``synthesize_image`` runs SS-Net fully convolutionally on a guide already aligned to the target (refsr's default
variant): no overlapping patches, so no computation the result does not need, and no seams; tiles with a halo of
``SSNET_HALO`` LR pixels bound memory and give the whole-image result (a test checks).

Padding rule (patches): the LR inputs are padded by edge replication at the bottom and right until the patches, placed
every ``stride`` LR pixels from (0, 0), cover the image exactly; the output is cropped back to (h*s, w*s). The reference
is padded by edge replication for patches that reach outside it. Memory: patches run in batches of ``batch``;
only the output canvas and its weights are image-sized.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lfrefsr.filters import gaussian_kernel, separable_blur
from lfrefsr.warp import sample, warp


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), radius 3 sigma, replicate padding, float32."""
    return separable_blur(image, gaussian_kernel(sigma))


def patch_origins(length: int, patch: int, stride: int) -> list[int]:
    """Patch starts 0, stride, 2*stride, ... covering ``length`` once padded (see the padding rule)."""
    count = max(1, math.ceil(max(length - patch, 0) / stride) + 1)
    return [k * stride for k in range(count)]


def dense_flow(centre_flow: torch.Tensor, scale: int, size: tuple[int, int]) -> torch.Tensor:
    """Flow known at HR pixels (scale*m, scale*n) (2, h, w) -> every HR pixel (2, H, W), bilinear."""
    height, width = size
    ys = torch.arange(height, dtype=torch.float32, device=centre_flow.device) / scale
    xs = torch.arange(width, dtype=torch.float32, device=centre_flow.device) / scale
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([grid_x, grid_y])[None]  # (1, 2, H, W) in centre-grid units
    return sample(centre_flow[None].float(), coords, padding_mode="border")[0]


@torch.no_grad()
def synthesize(
    net,
    lr_features: torch.Tensor,
    ref: torch.Tensor,
    centre_flow: torch.Tensor,
    base: torch.Tensor | None = None,
    *,
    scale: int,
    patch: int = 8,
    stride: int = 8,
    blend: str = "mask",
    ref_patches: str = "warp",
    batch: int = 64,
    sigma: float = 3.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-image SR from SS-Net patch predictions.

    lr_features (Cl, h, w); ref (3, H, W) with H, W >= h*s, w*s; centre_flow (2, h, w): flow of the centre of each LR
    pixel (HR pixel (s*m, s*n)) into the reference; base (3, h*s, w*s) or None.
    Returns sr (3, h*s, w*s) and the blended occlusion confidence (1, h*s, w*s).
    """
    _, h, w = lr_features.shape
    big = patch * scale
    rows, cols = patch_origins(h, patch, stride), patch_origins(w, patch, stride)
    pad_h, pad_w = rows[-1] + patch - h, cols[-1] + patch - w
    feats = F.pad(lr_features[None], (0, pad_w, 0, pad_h), mode="replicate")[0]  # (Cl, hp, wp)
    flow_lr = F.pad(centre_flow[None].float(), (0, pad_w, 0, pad_h), mode="replicate")[0]  # (2, hp, wp)
    out_h, out_w = (h + pad_h) * scale, (w + pad_w) * scale
    if base is not None:
        base = F.pad(base[None], (0, pad_w * scale, 0, pad_h * scale), mode="replicate")[0]
    source, shifts = _reference_source(ref, flow_lr, scale, big, (out_h, out_w), ref_patches)
    canvas = torch.zeros(3, out_h, out_w, device=ref.device)
    weight = torch.zeros(1, out_h, out_w, device=ref.device)
    mask_canvas = torch.zeros(1, out_h, out_w, device=ref.device)
    origins = [(i, j) for i in rows for j in cols]
    for start in range(0, len(origins), batch):
        chunk = origins[start : start + batch]
        lr_batch = torch.stack([feats[:, i : i + patch, j : j + patch] for i, j in chunk])  # (B, Cl, p, p)
        ref_batch, base_batch = _reference_patches(chunk, source, shifts, base, scale=scale, patch=patch)
        prediction, mask = net(lr_batch, ref_batch, base_batch)  # (B, 3, P, P), (B, 1, P, P)
        weights = gaussian_blur(mask, sigma) if blend == "mask" else torch.ones_like(mask)
        for (i, j), pred_k, mask_k, weight_k in zip(chunk, prediction, mask, weights, strict=True):
            y, x = i * scale, j * scale
            canvas[:, y : y + big, x : x + big] += weight_k * pred_k
            weight[:, y : y + big, x : x + big] += weight_k
            mask_canvas[:, y : y + big, x : x + big] += mask_k
    count = torch.zeros_like(weight)
    for i, j in origins:
        count[:, i * scale : i * scale + big, j * scale : j * scale + big] += 1
    sr = canvas / weight.clamp_min(1e-8)
    crop = (slice(None), slice(0, h * scale), slice(0, w * scale))
    return sr[crop], (mask_canvas / count)[crop]


def _reference_source(ref, flow_lr, scale: int, big: int, out_size: tuple[int, int], ref_patches: str):
    """What reference patches are cut from: (source (3, ..), shifts (2, hp, wp) long or None). ``warp``: the
    reference warped by the dense flow, aligned to the (padded) target, offset by ``big``; ``shift``: the reference
    with a margin of ``big`` and every LR pixel's rounded displacement."""
    out_h, out_w = out_size
    ref_margin = F.pad(ref[None], (big, big + out_w, big, big + out_h), mode="replicate")[0]  # room to cut
    if ref_patches == "warp":
        flow = dense_flow(flow_lr, scale, (out_h, out_w))  # (2, out_h, out_w)
        return warp(ref_margin[None], (flow + big)[None], padding_mode="border")[0], None  # aligned to the target
    if ref_patches == "shift":
        return ref_margin, flow_lr.round().long()
    raise ValueError("ref_patches is 'warp' or 'shift'")


def _reference_patches(chunk, source, shifts, base, *, scale: int, patch: int):
    """The reference patch (B, 3, P, P) and the base patch (B, 3, P, P) or None of each LR patch origin (i, j) in
    ``chunk``: cut from ``source`` where the patch lies (``warp``) or around its centre pixel's match (``shift``)."""
    big = patch * scale
    ref_batch, base_batch = [], []
    for i, j in chunk:
        y, x = i * scale, j * scale
        if shifts is not None:
            dx, dy = (int(v) for v in shifts[:, i + patch // 2, j + patch // 2])
            y, x = y + dy + big, x + dx + big
        ref_batch.append(source[:, y : y + big, x : x + big])
        if base is not None:
            base_batch.append(base[:, i * scale : i * scale + big, j * scale : j * scale + big])
    return torch.stack(ref_batch), torch.stack(base_batch) if base is not None else None


SSNET_HALO = 8  # LR pixels: SS-Net's receptive field radius is below 8 LR pixels (64 HR) at x8, and below at x2, x4


@torch.no_grad()
def synthesize_image(
    net,
    lr_features: torch.Tensor,
    guide: torch.Tensor,
    base: torch.Tensor | None = None,
    *,
    scale: int,
    tile: int | None = 64,
    halo: int = SSNET_HALO,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SS-Net on a whole image, in tiles of ``tile`` LR pixels (None: one piece) with ``halo`` LR pixels of context.

    lr_features (Cl, h, w); guide (hr_in_channels, h*s, w*s) aligned to the target; base (3, h*s, w*s) or None.
    Returns sr (3, h*s, w*s) and M(0) (1, h*s, w*s). Tile borders fall on LR pixels, so SS-Net's 2^k max-pools see
    the same windows as in the whole image.
    """
    _, h, w = lr_features.shape
    step = tile or max(h, w)
    sr = torch.empty(3, h * scale, w * scale, device=guide.device)
    mask = torch.empty(1, h * scale, w * scale, device=guide.device)
    for top in range(0, h, step):
        for left in range(0, w, step):
            bottom, right = min(h, top + step), min(w, left + step)
            y0, y1, x0, x1 = max(0, top - halo), min(h, bottom + halo), max(0, left - halo), min(w, right + halo)
            hr = (slice(None), slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale))
            out, out_mask = net(lr_features[None, :, y0:y1, x0:x1], guide[hr][None],
                                None if base is None else base[hr][None])  # (1, 3, .., ..), (1, 1, .., ..)
            inner = (slice((top - y0) * scale, (bottom - y0) * scale), slice((left - x0) * scale, (right - x0) * scale))
            target = (slice(top * scale, bottom * scale), slice(left * scale, right * scale))
            sr[(slice(None), *target)] = out[0][(slice(None), *inner)].float()
            mask[(slice(None), *target)] = out_mask[0][(slice(None), *inner)].float()
    return sr, mask
