"""The matching engine: for every centre, the best-scoring reference position within a search range.

Scores are inner products ``<f_target(c), g_ref(p)> + bias(p)`` (a bias turns an L2 distance into an inner
product: ``-|f-g|^2 = 2<f,g> - |g|^2 - |f|^2``, with the last term constant per centre).

Centres lie on a grid of spacing ``stride`` at HR scale: centre (m, n) is HR pixel (stride*m, stride*n), as CC-Net's
training samples them. The search is a blocked matrix product: a block of B x B centres is scored against the union
of their windows in one GEMM, then each centre's scores outside its own window are masked, so the full cost volume of
a large image is never held (peak memory ~ B^2 (2R + stride*B)^2 scores). An epipolar mode searches only along a
line through the centre (a light field's baseline direction), a 1-D search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfrefsr.warp import sample


@dataclass
class Matches:
    """One match per centre. All tensors are (Ny, Nx) or (2, Ny, Nx); positions are (x, y) reference pixels."""

    stride: int
    position: torch.Tensor  # (2, Ny, Nx) float: matched reference pixel (x, y), sub-pixel if refined
    score: torch.Tensor  # (Ny, Nx) best score
    confidence: torch.Tensor  # (Ny, Nx) softmax probability of the best candidate within the window

    @property
    def centres(self) -> torch.Tensor:
        """(2, Ny, Nx) HR pixel (x, y) of each centre."""
        _, rows, cols = self.position.shape
        ys = torch.arange(rows, dtype=torch.float32) * self.stride
        xs = torch.arange(cols, dtype=torch.float32) * self.stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # each (Ny, Nx)
        return torch.stack([grid_x, grid_y])

    @property
    def flow(self) -> torch.Tensor:
        """(2, Ny, Nx): matched position minus centre (the SPEC flow convention)."""
        return self.position - self.centres.to(self.position.device)


def _parabola(minus: torch.Tensor, centre: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Sub-pixel offset of a parabola's peak through three equally spaced scores, within [-0.5, 0.5]."""
    curvature = minus - 2 * centre + plus
    offset = 0.5 * (minus - plus) / torch.where(curvature < 0, curvature, torch.full_like(curvature, -1e-12))
    return torch.where(torch.isfinite(offset) & (curvature < 0), offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def _block_scores(target, ref, *, stride: int, radius: int, ref_bias, block: int):
    """Yield (m0, m1, n0, n1, y0, x0, scores (h, w, bh, bw)): each block of centres scored against the union of
    their windows in one GEMM; the caller applies each centre's own window."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    ref_hwc = ref.permute(1, 2, 0).contiguous()  # (H, W, C): window rows are contiguous, no copy per block
    for m0 in range(0, rows, block):
        for n0 in range(0, cols, block):
            m1, n1 = min(m0 + block, rows), min(n0 + block, cols)
            y0, y1 = max(0, m0 * stride - radius), min(height, (m1 - 1) * stride + radius + 1)
            x0, x1 = max(0, n0 * stride - radius), min(width, (n1 - 1) * stride + radius + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            feats = target[:, m0:m1, n0:n1].reshape(channels, -1)  # (C, bh*bw)
            scores = torch.matmul(ref_hwc[y0:y1, x0:x1], feats)  # (h, w, bh*bw)
            if ref_bias is not None:
                scores = scores + ref_bias[y0:y1, x0:x1, None].to(scores.dtype)
            yield m0, m1, n0, n1, y0, x0, scores.view(y1 - y0, x1 - x0, m1 - m0, n1 - n0)


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
) -> Matches:
    """Match centre features ``target`` (C, Ny, Nx) against dense reference features ``ref`` (C, H, W).

    ``direction`` (dx, dy): epipolar mode, candidates ``centre + k * direction / max(|dx|, |dy|)`` for
    ``|k| <= search_range``. Otherwise a full 2-D search over ``|dx|, |dy| <= search_range``.
    Features may be bfloat16 (scores then are too); the returned score is the confidence.
    """
    if direction is not None:
        return _match_line(target, ref, stride=stride, search_range=search_range, ref_bias=ref_bias,
                           direction=direction, subpixel=subpixel)
    _, rows, cols = target.shape
    radius = int(search_range)
    # bfloat16 GEMM outputs are rounded to 8 mantissa bits, which ties neighbouring candidates: the argmax is
    # re-decided (and sub-pixel peaks fitted) on float32 scores of its 3 x 3 neighbourhood
    low_precision = target.dtype == torch.bfloat16 or ref.dtype == torch.bfloat16
    coarse_subpixel, subpixel = subpixel and not low_precision, subpixel
    position = torch.zeros(2, rows, cols, device=target.device)
    score = torch.full((rows, cols), float("-inf"), device=target.device)
    for m0, m1, n0, n1, y0, x0, scores in _block_scores(target, ref, stride=stride, radius=radius,
                                                         ref_bias=ref_bias, block=block):
        y1, x1 = y0 + scores.shape[0], x0 + scores.shape[1]
        for j in range(n1 - n0):  # columns first: each centre column has one contiguous column range
            cx = (n0 + j) * stride
            a, b = max(x0, cx - radius) - x0, min(x1, cx + radius + 1) - x0
            col_best, col_index = scores[:, a:b, :, j].max(dim=1)  # (h, bh)
            col_best = col_best.float()
            cy = torch.arange(m0, m1, device=target.device) * stride  # (bh,)
            ys = torch.arange(y0, y1, device=target.device)[:, None]  # (h, 1)
            col_best = col_best.masked_fill((ys - cy[None]).abs() > radius, float("-inf"))  # rows outside
            best, iy = col_best.max(dim=0)  # (bh,)
            ix = col_index.gather(0, iy[None])[0] + a  # (bh,)
            px, py = (ix + x0).float(), (iy + y0).float()
            if coarse_subpixel:
                px = px + _parabola_peak(*_neighbours(scores[..., j], iy, ix, axis=1, lo=a, hi=b), best)
                py = py + _parabola_peak(*_neighbours(scores[..., j], iy, ix, axis=0, lo=0, hi=y1 - y0,
                                                 limit=(cy - radius - y0, cy + radius - y0)), best)
            position[0, m0:m1, n0 + j], position[1, m0:m1, n0 + j] = px, py
            score[m0:m1, n0 + j] = best
    if low_precision:
        position, score = _refine_fp32(target, ref, position, stride=stride, radius=radius, ref_bias=ref_bias,
                                       subpixel=subpixel)
    return Matches(stride, position, score, score)


def _refine_fp32(target, ref, position, *, stride, radius, ref_bias, subpixel, rounds: int = 2):
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
        fx = fx + _parabola(scores[:, 3], scores[:, 4], scores[:, 5])
        fy = fy + _parabola(scores[:, 1], scores[:, 4], scores[:, 7])
    out = torch.stack([fx, fy]).view(2, rows, cols)
    return out, scores[:, 4].view(rows, cols)


@torch.no_grad()
def match_topk(target: torch.Tensor, ref: torch.Tensor, *, stride: int, k: int, search_range: int = 100,
               ref_bias: torch.Tensor | None = None, block: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best positions per centre: positions (k, 2, Ny, Nx) as (x, y), scores (k, Ny, Nx), best first.

    Same blocked GEMM as ``match``; each centre's window is applied as a separable -inf penalty before ``topk``.
    """
    _, rows, cols = target.shape
    radius = int(search_range)
    positions = torch.zeros(k, 2, rows, cols)
    scores_out = torch.full((k, rows, cols), float("-inf"))
    for m0, m1, n0, n1, y0, x0, scores in _block_scores(target, ref, stride=stride, radius=radius,
                                                         ref_bias=ref_bias, block=block):
        scores = scores.float()
        h, w = scores.shape[:2]
        y1, x1 = y0 + h, x0 + w
        cy = torch.arange(m0, m1) * stride
        cx = torch.arange(n0, n1) * stride
        row_pen = torch.where((torch.arange(y0, y1)[:, None] - cy[None]).abs() <= radius, 0.0, float("-inf"))
        col_pen = torch.where((torch.arange(x0, x1)[:, None] - cx[None]).abs() <= radius, 0.0, float("-inf"))
        scores = scores + row_pen[:, None, :, None] + col_pen[None, :, None, :]  # (h, w, bh, bw)
        best, index = scores.reshape(h * w, m1 - m0, n1 - n0).topk(min(k, h * w), dim=0)  # (k, bh, bw)
        kk = best.shape[0]
        positions[:kk, 0, m0:m1, n0:n1] = (index % w + x0).float()
        positions[:kk, 1, m0:m1, n0:n1] = (index // w + y0).float()
        scores_out[:kk, m0:m1, n0:n1] = best
    return positions, scores_out


def _neighbours(scores, iy, ix, *, axis, lo, hi, limit=None):
    """Scores one step before and after the best (iy, ix) along ``axis`` of ``scores`` (h, w, bh); -inf outside."""
    out = []
    centres = torch.arange(len(iy), device=iy.device)
    for step in (-1, 1):
        ny, nx = (iy + step, ix) if axis == 0 else (iy, ix + step)
        moved = ny if axis == 0 else nx
        inside = (moved >= lo) & (moved < hi)
        if limit is not None:
            inside &= (moved >= limit[0]) & (moved <= limit[1])
        values = scores[ny.clamp(0, scores.shape[0] - 1), nx.clamp(0, scores.shape[1] - 1), centres].float()
        out.append(torch.where(inside, values, torch.full_like(values, float("-inf"))))
    return out[0], out[1]


def _parabola_peak(minus, plus, centre):
    return _parabola(minus, centre, plus)


def _match_line(target, ref, *, stride, search_range, ref_bias, direction, subpixel) -> Matches:
    """Epipolar 1-D search: candidates along ``direction`` through each centre, features sampled bilinearly."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    dx, dy = (float(d) for d in direction)
    norm = max(abs(dx), abs(dy))
    if norm == 0:
        raise ValueError("epipolar direction must be non-zero")
    dx, dy = dx / norm, dy / norm
    steps = torch.arange(-search_range, search_range + 1, device=target.device, dtype=torch.float32)  # (K,)
    maps = ref if ref_bias is None else torch.cat([ref, ref_bias[None]], 0)  # bias rides along as a channel
    maps = maps[None].float()  # once, not per row: converting bf16 features every row cost 8x (5.2 s vs 0.68 s)
    position = torch.zeros(2, rows, cols, device=target.device)
    score = torch.zeros(rows, cols, device=target.device)
    confidence = torch.zeros(rows, cols, device=target.device)
    xs = torch.arange(cols, device=target.device, dtype=torch.float32) * stride  # (Nx,)
    for m in range(rows):
        cand_x = xs[:, None] + steps[None] * dx  # (Nx, K)
        cand_y = float(m * stride) + steps[None].expand(cols, -1) * dy  # (Nx, K)
        coords = torch.stack([cand_x, cand_y])[None]  # (1, 2, Nx, K)
        sampled = sample(maps, coords, padding_mode="zeros")[0]  # (C[+1], Nx, K)
        scores = torch.einsum("cn,cnk->nk", target[:, m].float(), sampled[:channels])  # (Nx, K)
        if ref_bias is not None:
            scores = scores + sampled[channels]
        inside = (cand_x >= 0) & (cand_x <= width - 1) & (cand_y >= 0) & (cand_y <= height - 1)
        scores = scores.masked_fill(~inside, float("-inf"))
        best, index = scores.max(dim=-1)  # (Nx,)
        k = steps[index]
        if subpixel:
            minus = scores.gather(-1, (index - 1).clamp(min=0)[:, None])[:, 0]
            plus = scores.gather(-1, (index + 1).clamp(max=len(steps) - 1)[:, None])[:, 0]
            minus = torch.where(index > 0, minus, torch.full_like(minus, float("-inf")))
            plus = torch.where(index < len(steps) - 1, plus, torch.full_like(plus, float("-inf")))
            k = k + _parabola(minus, best, plus)
        position[0, m], position[1, m] = xs + k * dx, float(m * stride) + k * dy
        score[m] = best
        confidence[m] = torch.exp(best - torch.logsumexp(scores, dim=-1))
    return Matches(stride, position, score, confidence)


def brute_force(target: torch.Tensor, ref: torch.Tensor, *, stride: int, search_range: int,
                ref_bias: torch.Tensor | None = None) -> torch.Tensor:
    """Reference implementation for tests: (2, Ny, Nx) best integer position by looping over centres."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    out = torch.zeros(2, rows, cols)
    for m in range(rows):
        for n in range(cols):
            cy, cx = m * stride, n * stride
            y0, y1 = max(0, cy - search_range), min(height, cy + search_range + 1)
            x0, x1 = max(0, cx - search_range), min(width, cx + search_range + 1)
            scores = torch.einsum("c,chw->hw", target[:, m, n], ref[:, y0:y1, x0:x1])
            if ref_bias is not None:
                scores = scores + ref_bias[y0:y1, x0:x1]
            index = int(scores.flatten().argmax())
            out[0, m, n], out[1, m, n] = x0 + index % (x1 - x0), y0 + index // (x1 - x0)
    return out
