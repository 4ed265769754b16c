"""Refinement of integer matches on float32 scores: a bfloat16 argmax re-decided over its 3 x 3 neighbourhood, and
sub-pixel peaks by parabolas through the scores one step either side."""

from __future__ import annotations

import torch


def parabola(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of a parabola's peak through three equally spaced scores, within [-0.5, 0.5]."""
    curvature = minus - 2 * centre + plus
    offset = 0.5 * (minus - plus) / torch.where(curvature < 0, curvature, torch.full_like(curvature, -1e-12))
    return torch.where(torch.isfinite(offset) & (curvature < 0), offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def refine_fp32(target, ref, position, *, stride, radius, ref_bias, subpixel, rounds: int = 2):
    """Hill-climb each integer match over its 3 x 3 neighbourhood (inside the image and the centre's window) on
    float32 scores; optional parabola sub-pixel peak from the same scores. -> (position (2, Ny, Nx), score)."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    ref_hwc = ref.permute(1, 2, 0)  # (H, W, C) view of the channels-last features
    feats = target.reshape(channels, -1).t().float()  # (N, C)
    ys_c = (torch.arange(rows, device=target.device) * stride)[:, None].expand(rows, cols).reshape(-1)  # (N,)
    xs_c = (torch.arange(cols, device=target.device) * stride)[None, :].expand(rows, cols).reshape(-1)  # (N,)
    px, py = position[0].reshape(-1).long(), position[1].reshape(-1).long()  # (N,)
    offsets = torch.tensor([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], device=target.device)  # (9, 2)

    def neighbourhood(px, py):
        ny, nx = py[:, None] + offsets[None, :, 0], px[:, None] + offsets[None, :, 1]  # (N, 9)
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        inside &= ((ny - ys_c[:, None]).abs() <= radius) & ((nx - xs_c[:, None]).abs() <= radius)
        cy, cx = ny.clamp(0, height - 1), nx.clamp(0, width - 1)
        scores = torch.einsum("nkc,nc->nk", ref_hwc[cy, cx].float(), feats)  # (N, 9)
        if ref_bias is not None:
            scores = scores + ref_bias[cy, cx].float()
        return scores.masked_fill(~inside, float("-inf"))

    for _ in range(rounds):
        scores = neighbourhood(px, py)
        best = scores.argmax(dim=1)  # (N,)
        if bool((best == 4).all()):
            break
        py, px = py + offsets[best, 0], px + offsets[best, 1]
    scores = neighbourhood(px, py)  # (N, 9), index 4 is the match itself
    fx, fy = px.float(), py.float()
    if subpixel:
        fx = fx + parabola(scores[:, 3], scores[:, 4], scores[:, 5])
        fy = fy + parabola(scores[:, 1], scores[:, 4], scores[:, 7])
    out = torch.stack([fx, fy]).view(2, rows, cols)
    return out, scores[:, 4].view(rows, cols)
