"""The epipolar 1-D search: candidates along a line through each centre (a light field's baseline direction),
reference features sampled bilinearly, each centre's whole line of scores held (it is small)."""

from __future__ import annotations

import torch

from lfrefsr.correspondence.aggregate import present_mean
from lfrefsr.correspondence.matches import Matches
from lfrefsr.correspondence.refine import parabola


def match_line(target, ref, *, stride, search_range, ref_bias, direction, subpixel, aggregate: int = 1,
               rows_per_pass: int | None = None) -> Matches:
    """Epipolar 1-D search: candidates ``centre + k * direction / max(|dx|, |dy|)`` for ``|k| <= search_range``.
    With ``aggregate`` > 1, each candidate step's score is averaged over the neighbouring centres first."""
    _, rows, cols = target.shape
    dx, dy = (float(d) for d in direction)
    norm = max(abs(dx), abs(dy))
    if norm == 0:
        raise ValueError("epipolar direction must be non-zero")
    dx, dy = dx / norm, dy / norm
    steps = torch.arange(-search_range, search_range + 1, device=target.device, dtype=torch.float32)  # (K,)
    scores, inside = _line_scores(target, ref, ref_bias, steps, (dx, dy), stride=stride,
                                  rows_per_pass=rows_per_pass)  # each (Ny, Nx, K)
    if aggregate > 1:  # per step, the mean over the neighbouring centres whose candidate lies inside
        half = aggregate // 2
        scores = present_mean(scores.permute(2, 0, 1), inside.permute(2, 0, 1), aggregate,
                              (half, half, half, half)).permute(1, 2, 0)  # (K, Ny, Nx) planes -> (Ny, Nx, K)
    scores = scores.masked_fill(~inside, float("-inf"))
    best, index = scores.max(dim=-1)  # (Ny, Nx)
    k = steps[index]
    if subpixel:
        minus = scores.gather(-1, (index - 1).clamp(min=0)[..., None])[..., 0]
        plus = scores.gather(-1, (index + 1).clamp(max=len(steps) - 1)[..., None])[..., 0]
        minus = torch.where(index > 0, minus, torch.full_like(minus, float("-inf")))
        plus = torch.where(index < len(steps) - 1, plus, torch.full_like(plus, float("-inf")))
        k = k + parabola(minus, best, plus)
    xs = torch.arange(cols, device=target.device, dtype=torch.float32) * stride  # (Nx,)
    ys = torch.arange(rows, device=target.device) * stride
    position = torch.stack([xs[None, :] + k * dx, ys[:, None] + k * dy])
    confidence = torch.exp(best - torch.logsumexp(scores, dim=-1))
    return Matches(stride, position.float(), best, confidence)


def _line_scores(target, ref, ref_bias, steps, direction, *, stride, rows_per_pass):
    """Every centre's score at every step along the normalised ``direction`` (dx, dy), and whether the candidate
    lies inside the reference: (Ny, Nx, K) float32 and bool.

    Every step moves one whole pixel along the dominant axis, so each candidate is the linear interpolation of two
    pixels across it (bilinear sampling with zero padding, align_corners, with one weight 0): two row gathers from
    the (H*W, C) features and one batched product each, cheaper than grid_sample's 4-tap bilinear with the same
    scores up to rounding (benchmarks/README.md, "Kernels and engine")."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    dx, dy = direction
    ref_flat = ref.permute(1, 2, 0).reshape(height * width, channels).float()  # (H*W, C), once, not per centre row
    bias_flat = None if ref_bias is None else ref_bias.reshape(-1).float()  # (H*W,)
    horizontal = abs(dx) >= abs(dy)  # the dominant axis: x steps by whole pixels
    scores = torch.empty(rows, cols, len(steps), device=target.device)  # (Ny, Nx, K): small, one line per centre
    inside = torch.empty(rows, cols, len(steps), dtype=torch.bool, device=target.device)
    xs = torch.arange(cols, device=target.device, dtype=torch.float32) * stride  # (Nx,)
    # centre rows per pass: one on a CPU (its gathers stay in cache); on a GPU as many as ~256 MiB of gathered
    # features allow, since one row per pass is bound by kernel launches there
    chunk = rows_per_pass or (max(1, 2**26 // (cols * len(steps) * channels)) if target.device.type == "cuda" else 1)
    for m0 in range(0, rows, chunk):
        m1 = min(rows, m0 + chunk)
        ys = torch.arange(m0, m1, device=target.device, dtype=torch.float32)[:, None, None] * stride  # (R, 1, 1)
        cand_x = (xs[:, None] + steps[None] * dx).expand(m1 - m0, -1, -1)  # (R, Nx, K)
        cand_y = ys + (steps * dy).expand(cols, -1)  # (R, Nx, K)
        major, minor = (cand_x, cand_y) if horizontal else (cand_y, cand_x)
        low = minor.floor()  # (R, Nx, K): the tap below on the minor axis
        major, frac, low = major.round().long(), minor - low, low.long()  # whole pixels and the weight of the tap above
        feats = target[:, m0:m1].permute(1, 2, 0).reshape(-1, channels, 1).float()  # (R*Nx, C, 1)
        total = torch.zeros(m1 - m0, cols, len(steps), device=target.device)  # (R, Nx, K)
        for tap, weight in ((low, 1.0 - frac), (low + 1, frac)):
            px, py = (major, tap) if horizontal else (tap, major)
            present = (px >= 0) & (px < width) & (py >= 0) & (py < height)  # zero padding outside the image
            index = (py.clamp(0, height - 1) * width + px.clamp(0, width - 1)).reshape(-1)  # (R*Nx*K,)
            gathered = ref_flat.index_select(0, index).view(-1, len(steps), channels)  # (R*Nx, K, C)
            values = torch.bmm(gathered, feats).view(m1 - m0, cols, len(steps))  # (R, Nx, K)
            if bias_flat is not None:
                values = values + bias_flat[index].view(m1 - m0, cols, len(steps))
            total += torch.where(present, weight, 0.0) * values
        scores[m0:m1] = total
        inside[m0:m1] = (cand_x >= 0) & (cand_x <= width - 1) & (cand_y >= 0) & (cand_y <= height - 1)
    return scores, inside
