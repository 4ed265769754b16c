"""Exact zero-mean normalised cross-correlation (ZNCC) of square patches, searched over a window.

For every displacement d the products T(y) R(y + d) are box-summed at the centres with cumulative sums, one row of
displacements (all dx for one dy) at a time, so memory stays at (2R+1) x H x W floats in chunks and the result is the
exact ZNCC of ``patch`` x ``patch`` grayscale patches (no approximation by sub-sampling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfrefsr.correspondence.matches import Matches
from lfrefsr.metrics import rgb_to_y


def _box_at(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, half: int) -> torch.Tensor:
    """Sums of ``values`` (..., Hp, Wp) over (2*half+1)^2 boxes centred at padded rows x cols -> (..., Ny, Nx)."""
    cum = F.pad(values.cumsum(-2), (0, 0, 1, 0))  # (..., Hp+1, Wp)
    vertical = cum[..., rows + half + 1, :] - cum[..., rows - half, :]  # (..., Ny, Wp)
    cum = F.pad(vertical.cumsum(-1), (1, 0))  # (..., Ny, Wp+1)
    return cum[..., cols + half + 1] - cum[..., cols - half]  # (..., Ny, Nx)


def _statistics(values: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, half: int, n: float):
    """Sums and standard deviations of ``values`` (Hp, Wp) over the ``n``-pixel boxes at padded rows x cols."""
    total = _box_at(values, rows, cols, half)  # (Ny, Nx)
    squares = _box_at(values * values, rows, cols, half)
    return total, (squares / n - (total / n) ** 2).clamp_min(1e-12).sqrt()


def _padded_grays(target: torch.Tensor, ref: torch.Tensor, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-mean luma of the target (H, W) and the reference (Hr, Wr), each padded by ``pad`` by edge replication
    (the reference further to the target's size where it is smaller): (H+2p, W+2p), (max(H, Hr)+2p, max(W, Wr)+2p)."""
    gray_t = rgb_to_y(target).float()  # (H, W)
    gray_r = rgb_to_y(ref).float()
    gray_t, gray_r = gray_t - gray_t.mean(), gray_r - gray_r.mean()  # smaller sums, better float32 precision
    (height, width), (height_r, width_r) = gray_t.shape, gray_r.shape
    t_pad = F.pad(gray_t[None, None], (pad, pad, pad, pad), mode="replicate")[0, 0]  # (H+2p, W+2p)
    extra_y, extra_x = max(0, height - height_r), max(0, width - width_r)  # a reference smaller than the target
    r_pad = F.pad(gray_r[None, None], (pad, pad + extra_x, pad, pad + extra_y), mode="replicate")[0, 0]
    return t_pad, r_pad


@torch.no_grad()
def zncc_match(target: torch.Tensor, ref: torch.Tensor, *, stride: int, search_range: int = 100,
               patch: int = 65, chunk: int = 48) -> Matches:
    """Best ZNCC match within ``search_range`` for centres on the ``stride`` grid.

    ``target`` (3, H, W): the upsampled LR image; ``ref`` (3, Hr, Wr): the reference (raw or blurred).
    Patches leaving the image are padded by edge replication; candidates stay inside the reference. The result
    is on ``target``'s device.
    """
    half, radius = patch // 2, int(search_range)
    pad = half + radius
    t_pad, r_pad = _padded_grays(target, ref, pad)
    height, width = target.shape[-2:]
    height_r, width_r = ref.shape[-2:]
    device = t_pad.device
    rows_c = torch.arange(0, height, stride, device=device)  # centre rows (HR pixels)
    cols_c = torch.arange(0, width, stride, device=device)
    n = float(patch * patch)
    # Target statistics at the centres (in padded coordinates).
    sum_t, std_t = _statistics(t_pad, rows_c + pad, cols_c + pad, half, n)  # each (Ny, Nx)
    # Reference statistics at every position (padded coordinates), looked up per displacement.
    all_rows = torch.arange(r_pad.shape[0] - 2 * half, device=device) + half
    all_cols = torch.arange(r_pad.shape[1] - 2 * half, device=device) + half
    sum_r, std_r = _statistics(r_pad, all_rows, all_cols, half, n)  # (Hr+2R, Wr+2R), index = padded coordinate - half

    best = torch.full((len(rows_c), len(cols_c)), float("-inf"), device=device)
    best_dx = torch.zeros_like(best, dtype=torch.long)
    best_dy = torch.zeros_like(best, dtype=torch.long)
    region_rows = slice(pad - half, pad + height + half)  # target rows needed by any centre's patch
    region_cols = slice(pad - half, pad + width + half)
    t_region = t_pad[region_rows, region_cols]  # (H+2h, W+2h)
    local_rows, local_cols = rows_c + half, cols_c + half  # centres inside the region
    shifts_x = torch.arange(-radius, radius + 1, device=device)
    for dy in range(-radius, radius + 1):
        r_rows = slice(pad - half + dy, pad + height + half + dy)
        for start in range(0, len(shifts_x), chunk):
            dxs = shifts_x[start : start + chunk]
            shifted = torch.stack([r_pad[r_rows, pad - half + dx : pad + width + half + dx] for dx in dxs.tolist()])
            cross = _box_at(t_region[None] * shifted, local_rows, local_cols, half)  # (k, Ny, Nx)
            ref_rows = rows_c + dy + pad - half  # index into the reference statistics
            ref_cols = cols_c[None, :] + dxs[:, None] + pad - half  # (k, Nx)
            mean_r = sum_r[ref_rows][:, ref_cols].permute(1, 0, 2) / n  # (k, Ny, Nx)
            sd_r = std_r[ref_rows][:, ref_cols].permute(1, 0, 2)
            score = (cross / n - (sum_t / n)[None] * mean_r) / (std_t[None] * sd_r)
            # candidates must lie inside the reference image
            cand_y = (rows_c + dy)[None, :, None]
            cand_x = (cols_c[None, :] + dxs[:, None])[:, None, :]
            inside = (cand_y >= 0) & (cand_y < height_r) & (cand_x >= 0) & (cand_x < width_r)
            score = score.masked_fill(~inside, float("-inf"))
            chunk_best, index = score.max(dim=0)  # (Ny, Nx)
            better = chunk_best > best
            best = torch.where(better, chunk_best, best)
            best_dx = torch.where(better, dxs[index], best_dx)
            best_dy = torch.where(better, torch.full_like(best_dy, dy), best_dy)
    grid_y, grid_x = torch.meshgrid(rows_c.float(), cols_c.float(), indexing="ij")
    position = torch.stack([grid_x + best_dx, grid_y + best_dy])  # (2, Ny, Nx)
    return Matches(stride, position, best, best)
