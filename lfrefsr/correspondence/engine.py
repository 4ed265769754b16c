"""The matching engine: for every centre, the best-scoring reference position within a search range.

Scores are inner products ``<f_target(c), g_ref(p)> + bias(p)`` (a bias turns an L2 distance into an inner
product: ``-|f-g|^2 = 2<f,g> - |g|^2 - |f|^2``, with the last term constant per centre).

Centres lie on a grid of spacing ``stride`` at HR scale: centre (m, n) is HR pixel (stride*m, stride*n), as CC-Net's
training samples them. ``match`` and ``match_topk`` here are the entry points; the work is split by concern:

    search.py     the 2-D search, streamed over the reference without holding a cost volume
    aggregate.py  scores averaged over k x k neighbouring centres per displacement (periodic structure)
    epipolar.py   the 1-D search along a line through the centre (a light field's baseline direction)
    refine.py     bfloat16 argmaxes re-decided on float32 scores, and sub-pixel peaks
    matches.py    ``Matches``, the result (importable from here too)
"""

from __future__ import annotations

import torch

from lfrefsr.correspondence.aggregate import match_aggregated
from lfrefsr.correspondence.epipolar import match_line
from lfrefsr.correspondence.matches import Matches
from lfrefsr.correspondence.refine import refine_fp32
from lfrefsr.correspondence.search import best_rows, block_scores

__all__ = ["Matches", "match", "match_topk"]


@torch.no_grad()
def match(
    target: torch.Tensor,
    ref: torch.Tensor,
    *,
    stride: int,
    search_range: int = 100,
    ref_bias: torch.Tensor | None = None,
    block: int = 8,
    subpixel: bool = False,
    direction: tuple[float, float] | None = None,
    aggregate: int = 1,
    candidates: int = 1,
    group: int | None = None,
) -> Matches:
    """Match centre features ``target`` (C, Ny, Nx) against dense reference features ``ref`` (C, H, W).

    ``direction`` (dx, dy): epipolar mode, candidates ``centre + k * direction / max(|dx|, |dy|)`` for
    ``|k| <= search_range``. Otherwise a full 2-D search over ``|dx|, |dy| <= search_range``.
    ``aggregate`` (odd, 1 = off): mean score over ``aggregate`` x ``aggregate`` neighbouring centres per displacement
    (``aggregate.py``); ``candidates``: per centre, how many rows the 2-D search keeps for it. ``block`` centre
    columns and ``group`` reference rows (default 4 * block) are scored per product (``search.best_rows``).
    Features may be bfloat16 (scores then are too); the returned score is the confidence.
    """
    if aggregate < 1 or aggregate % 2 == 0:
        raise ValueError(f"aggregate must be an odd number >= 1, got {aggregate}")
    if direction is not None:
        return match_line(target, ref, stride=stride, search_range=search_range, ref_bias=ref_bias,
                          direction=direction, subpixel=subpixel, aggregate=aggregate)
    if aggregate > 1:
        return match_aggregated(target, ref, stride=stride, radius=int(search_range), ref_bias=ref_bias,
                                block=block, subpixel=subpixel, size=aggregate, candidates=candidates, group=group)
    radius = int(search_range)
    best, found = best_rows(target, ref, stride=stride, radius=radius, ref_bias=ref_bias, block=block, k=1,
                            group=group)  # (1, Ny, Nx), (1, 2, Ny, Nx)
    position, score = found[0].float(), best[0]
    # bfloat16 GEMM outputs are rounded to 8 mantissa bits, which ties neighbouring candidates: the argmax is
    # re-decided on float32 scores of its 3 x 3 neighbourhood. Sub-pixel peaks are fitted to float32 scores of the
    # same neighbourhood, recomputed for the 9 positions (the streamed search keeps no score volume)
    if target.dtype == torch.bfloat16 or ref.dtype == torch.bfloat16:
        position, score = refine_fp32(target, ref, position, stride=stride, radius=radius, ref_bias=ref_bias,
                                      subpixel=subpixel)
    elif subpixel:
        position, score = refine_fp32(target, ref, position, stride=stride, radius=radius, ref_bias=ref_bias,
                                      subpixel=True, rounds=0)
    return Matches(stride, position, score, score)


@torch.no_grad()
def match_topk(target: torch.Tensor, ref: torch.Tensor, *, stride: int, k: int, search_range: int = 100,
               ref_bias: torch.Tensor | None = None, block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best positions per centre: positions (k, 2, Ny, Nx) as (x, y), scores (k, Ny, Nx), best first;
    float32, on ``target``'s device.

    Same blocked GEMM as ``match``; each centre's window is applied as a separable -inf penalty before ``topk``.
    """
    _, rows, cols = target.shape
    radius = int(search_range)
    device = target.device
    positions = torch.zeros(k, 2, rows, cols, device=device)
    scores_out = torch.full((k, rows, cols), float("-inf"), device=device)
    for m0, m1, n0, n1, y0, x0, scores in block_scores(target, ref, stride=stride, radius=radius,
                                                        ref_bias=ref_bias, block=block):
        scores = scores.float()
        h, w = scores.shape[:2]
        y1, x1 = y0 + h, x0 + w
        cy = torch.arange(m0, m1, device=device) * stride
        cx = torch.arange(n0, n1, device=device) * stride
        row_pen = torch.where((torch.arange(y0, y1, device=device)[:, None] - cy[None]).abs() <= radius, 0.0,
                              float("-inf"))
        col_pen = torch.where((torch.arange(x0, x1, device=device)[:, None] - cx[None]).abs() <= radius, 0.0,
                              float("-inf"))
        scores = scores + row_pen[:, None, :, None] + col_pen[None, :, None, :]  # (h, w, bh, bw)
        best, index = scores.reshape(h * w, m1 - m0, n1 - n0).topk(min(k, h * w), dim=0)  # (k, bh, bw)
        kk = best.shape[0]
        positions[:kk, 0, m0:m1, n0:n1] = (index % w + x0).float()
        positions[:kk, 1, m0:m1, n0:n1] = (index // w + y0).float()
        scores_out[:kk, m0:m1, n0:n1] = best
    return positions, scores_out
