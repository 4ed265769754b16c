"""The matching engine: for every centre, the best-scoring reference position within a search range.

Scores are inner products ``<f_target(c), g_ref(p)> + bias(p)`` (a bias turns an L2 distance into an inner
product: ``-|f-g|^2 = 2<f,g> - |g|^2 - |f|^2``, with the last term constant per centre).

Centres lie on a grid of spacing ``stride`` at HR scale: centre (m, n) is HR pixel (stride*m, stride*n), as CC-Net's
training samples them. The 2-D search streams the reference (``_best_rows``): per column of B centres, a group of G
reference rows is scored in one matrix product against every centre row that reaches it, each centre's best is taken
within its own window only (``_row_maxima``) and kept if it beats the groups before. The full cost volume of a large
image is never held (peak memory ~ G (2R + stride B) (G + 2R) B / stride scores). An epipolar mode searches only
along a line through the centre (a light field's baseline direction), a 1-D search.

Aggregation (``aggregate=k``, k odd): a centre's score for a displacement is the mean of the scores of the k x k
neighbouring centres (``stride`` apart) for the same displacement, as stereo matchers aggregate costs. It widens the
support of each decision from one patch to k patches across, which periodic structure (combs, tiled textures) needs.
The 2-D search then runs in two passes: each centre's ``candidates`` best rows (the best column of each; 1: its
plain best match) from the streamed products, then the exact aggregated score of every candidate of the k x k
neighbourhood, gathered once per block. One candidate per centre gave the same pooled accuracy as aggregating the
full cost volume on the three pairs of ``../shared/data/match`` (46.5 / 76.6 / 88.4 % within 0 / 1 / 2 px either
way); two moved no figure by more than 0.1 point on 32 held-out synthetic pairs and cost twice the second pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def _window_scores(ref_hwc, feats, ref_bias, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Scores of the reference window ``ref_hwc[y0:y1, x0:x1]`` ((H, W, C), channels-last features) against centre
    features ``feats`` (C, N), plus the window's bias -> (h, w, N), fresh."""
    (y0, y1), (x0, x1) = rows, cols
    window = ref_hwc[y0:y1, x0:x1]  # (h, w, C) view, rows strided
    if window.dtype == torch.float32:  # one product per window row, straight from the strided view, no copy
        scores = torch.bmm(window, feats.expand(y1 - y0, -1, -1))  # (h, w, N)
    else:  # bfloat16: one product over a contiguous copy beats a batched one over the strided view
        scores = torch.matmul(window.contiguous(), feats)  # (h, w, N)
    # per 8x8 block at 512x512 on this CPU, float32: bmm 8.4 ms, matmul 12.7 ms (it copies the window itself,
    # slowly); bfloat16: matmul on a copied window 2.6 ms, bmm 3.2 ms. The same scores.
    if ref_bias is not None:
        scores += ref_bias[y0:y1, x0:x1, None].to(scores.dtype)
    return scores


def _block_scores(target, ref, *, stride: int, radius: int, ref_bias, block: int):
    """Yield (m0, m1, n0, n1, y0, x0, scores (h, w, bh, bw)): each block of centres scored against the union of
    their windows in one GEMM; the caller applies each centre's own window (``match_topk``)."""
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
            scores = _window_scores(ref_hwc, feats, ref_bias, (y0, y1), (x0, x1))  # (h, w, bh*bw)
            yield m0, m1, n0, n1, y0, x0, scores.view(y1 - y0, x1 - x0, m1 - m0, n1 - n0)


def _best_rows(target, ref, *, stride: int, radius: int, ref_bias, block: int, k: int, group: int | None = None):
    """Each centre's ``k`` best window rows, each with its best column, best first: (scores (k, Ny, Nx) float32,
    position (k, 2, Ny, Nx) long reference (x, y)); -inf scores where a window has fewer than ``k`` rows.

    The reference is streamed once per column of ``block`` centres, ``group`` window rows at a time. Each group is
    scored in one product against every centre row whose range reaches it (about (group + 2 radius) / stride rows
    of ``block`` centres), so a reference row is read once per block column, not once per block of centres whose
    windows hold it, and the product has hundreds of columns instead of block^2. Rows outside a centre's range are
    masked after the product (``_row_maxima``): (group + 2 radius) / (2 radius + 1) - 1 of the product is waste,
    15 % at the CPU's 32 rows. Before, each 8 x 8 block of centres was scored against the union of its windows: 106
    GFLOP at 170-210 GFLOP/s for a 512 x 512 view (stride 8, radius 100, 2 CPU threads), where this runs 97 GFLOP
    at ~280, and the whole aggregated search in 0.50 s instead of 0.63 s (group 16: 91 GFLOP, 0.53 s; the same
    matches).
    """
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    group = group or 4 * block  # CPU 32 rows: ~8 MB of scores per product; CUDA (block 32) 128 rows: ~300 MB
    ref_hwc = ref.permute(1, 2, 0).contiguous()  # (H, W, C), no copy when channels-last: window rows are contiguous
    best = torch.full((k, rows, cols), float("-inf"), device=target.device)
    position = torch.zeros(k, 2, rows, cols, dtype=torch.long, device=target.device)
    last_row = min(height, (rows - 1) * stride + radius + 1)  # no centre reaches below
    for n0 in range(0, cols, block):
        n1 = min(n0 + block, cols)
        x0, x1 = max(0, n0 * stride - radius), min(width, (n1 - 1) * stride + radius + 1)
        if x0 >= x1:
            continue
        outside_x = _column_plan(x0, x1 - x0, n0, n1, stride, radius, target.device)[-1]  # (w, bw)
        for y0 in range(0, last_row, group):
            y1 = min(last_row, y0 + group)
            m0 = max(0, -((radius - y0) // stride))  # ceil((y0 - radius) / stride): first centre row reaching y0
            m1 = min(rows, (y1 - 1 + radius) // stride + 1)  # one past the last centre row reaching y1 - 1
            if m0 >= m1:
                continue
            feats = target[:, m0:m1, n0:n1].reshape(channels, -1)  # (C, bh*bw)
            scores = _window_scores(ref_hwc, feats, ref_bias, (y0, y1), (x0, x1))  # (g, w, bh*bw)
            scores = scores.view(y1 - y0, x1 - x0, m1 - m0, n1 - n0)  # (g, w, bh, bw)
            row_best = _row_maxima(scores, y0=y0, x0=x0, rows=(m0, m1), cols=(n0, n1), stride=stride,
                                   radius=radius)  # (g, bh, bw), -inf outside each centre's rows
            kk = min(k, y1 - y0)
            if kk == 1:
                top, iy = row_best.max(dim=0, keepdim=True)  # (1, bh, bw)
            else:
                top, iy = row_best.topk(kk, dim=0)  # (kk, bh, bw)
            ix = _columns_at(scores, iy, outside_x)  # (kk, bh, bw), relative to x0
            found = torch.stack([ix + x0, iy + y0], dim=1)  # (kk, 2, bh, bw) absolute (x, y)
            held, held_at = best[:, m0:m1, n0:n1], position[:, :, m0:m1, n0:n1]  # views: (k, bh, bw), (k, 2, ...)
            if k == 1:  # strictly better only: on ties the earlier (upper) row stays, as one argmax would keep it
                better = top[0] > held[0]  # (bh, bw)
                held[0] = torch.where(better, top[0], held[0])
                held_at[0] = torch.where(better, found[0], held_at[0])
            else:  # held first: a tie keeps the earlier row
                merged, order = torch.cat([held, top]).topk(k, dim=0)  # (k, bh, bw)
                merged_at = torch.cat([held_at, found]).gather(0, order[:, None].expand(-1, 2, -1, -1))
                held.copy_(merged)
                held_at.copy_(merged_at)
    return best, position


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
    (module docstring); ``candidates``: per centre, how many rows the 2-D search keeps for it. ``block`` centre
    columns and ``group`` reference rows (default 4 * block) are scored per product (``_best_rows``).
    Features may be bfloat16 (scores then are too); the returned score is the confidence.
    """
    if aggregate < 1 or aggregate % 2 == 0:
        raise ValueError(f"aggregate must be an odd number >= 1, got {aggregate}")
    if direction is not None:
        return _match_line(target, ref, stride=stride, search_range=search_range, ref_bias=ref_bias,
                           direction=direction, subpixel=subpixel, aggregate=aggregate)
    if aggregate > 1:
        return _match_aggregated(target, ref, stride=stride, radius=int(search_range), ref_bias=ref_bias,
                                 block=block, subpixel=subpixel, size=aggregate, candidates=candidates, group=group)
    radius = int(search_range)
    best, found = _best_rows(target, ref, stride=stride, radius=radius, ref_bias=ref_bias, block=block, k=1,
                             group=group)  # (1, Ny, Nx), (1, 2, Ny, Nx)
    position, score = found[0].float(), best[0]
    # bfloat16 GEMM outputs are rounded to 8 mantissa bits, which ties neighbouring candidates: the argmax is
    # re-decided on float32 scores of its 3 x 3 neighbourhood. Sub-pixel peaks are fitted to float32 scores of the
    # same neighbourhood, recomputed for the 9 positions (the streamed search keeps no score volume)
    if target.dtype == torch.bfloat16 or ref.dtype == torch.bfloat16:
        position, score = _refine_fp32(target, ref, position, stride=stride, radius=radius, ref_bias=ref_bias,
                                       subpixel=subpixel)
    elif subpixel:
        position, score = _refine_fp32(target, ref, position, stride=stride, radius=radius, ref_bias=ref_bias,
                                       subpixel=True, rounds=0)
    return Matches(stride, position, score, score)


@functools.lru_cache(maxsize=256)
def _column_plan(x0: int, w: int, n0: int, n1: int, stride: int, radius: int, device: torch.device):
    """What ``_row_maxima`` needs about a block's window columns, the same for every block of a block column (so
    built once per block column): (origin, runs, penalty (runs, bw) float 0 / -inf, centre indices (bw,),
    [(column (bw,), absent (bw,))] per ``end`` offset, outside_x (w, bw) bool). See ``_row_maxima`` for the runs."""
    bw = n1 - n0
    first = n0 * stride - radius - x0  # a: where centre n0's range starts, relative to x0 (may be < 0)
    origin = first % stride  # the first run starts here
    runs = max(0, (w - origin) // stride)
    full, end = divmod(2 * radius + 1, stride)
    centre = torch.arange(bw, device=device)  # (bw,)
    start_run = centre + (first - origin) // stride  # (bw,) the run each range starts with
    run = torch.arange(runs, device=device)[:, None]  # (runs, 1)
    inside = (run >= start_run[None]) & (run < start_run[None] + full)  # (runs, bw)
    penalty = torch.zeros(runs, bw, device=device).masked_fill(~inside, float("-inf"))
    ends = []
    for offset in range(end):  # column a + stride * (j + full) + offset of centre j
        column = first + stride * (centre + full) + offset  # (bw,)
        ends.append((column.clamp(0, w - 1), (column < 0) | (column >= w)))
    cx = torch.arange(n0, n1, device=device) * stride  # (bw,)
    outside_x = (torch.arange(x0, x0 + w, device=device)[:, None] - cx[None]).abs() > radius  # (w, bw)
    return origin, runs, penalty, centre, ends, outside_x


@functools.lru_cache(maxsize=256)
def _outside_rows(y0: int, h: int, m0: int, m1: int, stride: int, radius: int, device: torch.device) -> torch.Tensor:
    """(h, bh, 1) bool: window row outside each centre row's own range."""
    cy = torch.arange(m0, m1, device=device) * stride  # (bh,)
    return ((torch.arange(y0, y0 + h, device=device)[:, None] - cy[None]).abs() > radius)[:, :, None]


def _row_maxima(scores, *, y0: int, x0: int, rows: tuple[int, int], cols: tuple[int, int], stride: int,
                radius: int) -> torch.Tensor:
    """Per window row and centre, the best score within the centre's own columns: scores (h, w, bh, bw) ->
    (h, bh, bw) float32, rows outside the centre's window at -inf. ``scores`` is left as it is.

    Centre j's columns are a + stride*j + [0, 2 radius]: every range starts on a column = a (mod stride). So the
    columns fall into runs of ``stride`` starting there, and each range is ``full`` whole runs and the first ``end``
    columns of the next (2 radius + 1 = full * stride + end). One pass takes every run's maximum; only those maxima
    (1/stride of the block) are masked per centre, and the ``end`` columns and the fewer than ``stride`` columns at
    either side of the runs are read on their own. This replaces a masked pass over the whole block and its maximum
    (three block-sized passes): per 8x8 block at 512x512, 1.0-1.2 ms instead of 1.8-2.1 ms in float32 and
    1.2-1.5 ms instead of 3.3-3.5 ms in bfloat16 over several runs (the same maxima)."""
    h, w, bh, bw = scores.shape
    device = scores.device
    origin, runs, penalty, centre, ends, outside_x = _column_plan(x0, w, *cols, stride, radius, device)
    best = None
    if runs > 0:
        in_runs = scores[:, origin : origin + runs * stride].view(h, runs, stride, bh, bw)  # (h, runs, stride, bh, bw)
        run_max = in_runs.amax(dim=2).float()  # (h, runs, bh, bw), fresh
        best = run_max.add_(penalty[None, :, None, :]).amax(dim=1)  # (h, bh, bw)
    for column, absent in ends:
        values = scores[:, column, :, centre].permute(1, 2, 0).float()  # (bw, h, bh) -> (h, bh, bw)
        values = values.masked_fill(absent, float("-inf"))
        best = values if best is None else torch.maximum(best, values)
    for lo, hi in ((0, origin), (origin + runs * stride, w)):  # fewer than ``stride`` columns each side
        if lo < hi:
            edge = scores[:, lo:hi].masked_fill(outside_x[None, lo:hi, None, :], float("-inf"))  # (h, hi-lo, bh, bw)
            edge = edge.amax(dim=1).float()
            best = edge if best is None else torch.maximum(best, edge)
    return best.masked_fill_(_outside_rows(y0, h, *rows, stride, radius, device), float("-inf"))


def _columns_at(scores: torch.Tensor, iy: torch.Tensor, outside_x: torch.Tensor) -> torch.Tensor:
    """The best column (relative to the window) of window row ``iy`` (k, bh, bw) for each centre, among the
    centre's own columns (``outside_x`` (w, bw) excluded), in scores (h, w, bh, bw) -> (k, bh, bw)."""
    per_centre = scores.permute(2, 3, 0, 1)  # (bh, bw, h, w) view
    index = iy.permute(1, 2, 0)[..., None].expand(-1, -1, -1, scores.shape[1])  # (bh, bw, k, w)
    rows = per_centre.gather(2, index)  # (bh, bw, k, w)
    rows = rows.masked_fill(outside_x.t()[None, :, None, :], float("-inf"))
    return rows.argmax(dim=-1).permute(2, 0, 1)  # (k, bh, bw)


def _row_candidates(target, ref, *, stride: int, radius: int, ref_bias, block: int, k: int,
                    group: int | None = None) -> torch.Tensor:
    """Each centre's ``k`` best rows of its window, with the best column of each: displacements (k, 2, Ny, Nx) as
    integer (dx, dy). One row per candidate keeps a single sharp peak from filling all ``k`` places."""
    _, rows, cols = target.shape
    best, found = _best_rows(target, ref, stride=stride, radius=radius, ref_bias=ref_bias, block=block, k=k,
                             group=group)  # (k, Ny, Nx), (k, 2, Ny, Nx)
    cy = torch.arange(rows, device=target.device)[:, None] * stride  # (Ny, 1)
    cx = torch.arange(cols, device=target.device)[None, :] * stride  # (1, Nx)
    shifts = found - torch.stack([cx.expand(rows, cols), cy.expand(rows, cols)])[None]  # (k, 2, Ny, Nx)
    found_any = torch.isfinite(best)[:, None]  # (k, 1, Ny, Nx)
    shifts = torch.where(found_any, shifts, shifts[:1])  # a window of fewer than k rows: repeat the best
    return torch.where(found_any[:1], shifts, 0)  # a centre with no reference in reach: no displacement


def _present_mean(values: torch.Tensor, present: torch.Tensor, size: int, pad: tuple[int, int, int, int]):
    """Per plane, the mean of ``values`` over each size x size window's ``present`` entries: values, present
    (P, H, W), ``pad`` (left, right, top, bottom) zeros added first -> (P, H', W'). The ratio of two box means over
    the same window, whose fixed divisor cancels; 0 where nothing in the window is present."""
    box = lambda x: F.avg_pool2d(F.pad(x[None], pad), size, stride=1)[0]  # noqa: E731
    return box(values.masked_fill(~present, 0.0)) / box(present.to(values.dtype)).clamp_min(1e-6)


def _box_mean(target, ref_hwc, ref_bias, shifts, *, stride, rows_ext, cols_ext, rows_core, cols_core, half):
    """Aggregated scores of the core centres at shared displacements ``shifts`` (D, 2) as (dx, dy) -> (D, bh, bw):
    per displacement, the mean raw score over the (2 half + 1)^2 neighbouring centres whose position lies inside
    the reference; -inf where the centre's own position does not."""
    height, width = ref_hwc.shape[:2]
    (e0, e1), (f0, f1), (m0, m1), (n0, n1) = rows_ext, cols_ext, rows_core, cols_core
    rows, cols = target.shape[1:]
    cy = torch.arange(e0, e1, device=target.device) * stride  # (eh,)
    cx = torch.arange(f0, f1, device=target.device) * stride  # (ew,)
    py = cy[None, :, None] + shifts[:, 1, None, None]  # (D, eh, 1)
    px = cx[None, None, :] + shifts[:, 0, None, None]  # (D, 1, ew)
    inside = (py >= 0) & (py < height) & (px >= 0) & (px < width)  # (D, eh, ew)
    flat = (py.clamp(0, height - 1) * width + px.clamp(0, width - 1)).permute(1, 2, 0)  # (eh, ew, D) pixel index
    # the reference feature under each centre at each displacement: whole rows of the (H*W, C) matrix, centre-major
    # so each centre's scores are one matrix-vector product (row gathers: 4x faster than 2-D advanced indexing)
    vectors = ref_hwc.reshape(height * width, -1).index_select(0, flat.reshape(-1))  # (eh*ew*D, C)
    vectors = vectors.view(flat.shape[0] * flat.shape[1], len(shifts), -1)  # (eh*ew, D, C)
    centre = target[:, e0:e1, f0:f1].reshape(target.shape[0], -1).t()  # (eh*ew, C)
    raw = torch.bmm(vectors, centre[:, :, None].to(vectors.dtype)).float()  # (eh*ew, D, 1)
    raw = raw.view(flat.shape[0], flat.shape[1], len(shifts)).permute(2, 0, 1)  # (D, eh, ew)
    if ref_bias is not None:
        raw = raw + ref_bias.reshape(-1)[flat].permute(2, 0, 1).float()
    # neighbours outside the centre grid are padding, so count as absent
    pad = (f0 - (n0 - half), (n1 + half) - f1, e0 - (m0 - half), (m1 + half) - e1)  # left, right, top, bottom
    own = inside[:, m0 - e0 : m1 - e0, n0 - f0 : n1 - f0]
    return _present_mean(raw, inside, 2 * half + 1, pad).masked_fill(~own, float("-inf"))  # (D, bh, bw)


def _match_aggregated(target, ref, *, stride, radius, ref_bias, block, subpixel, size, candidates,
                      group=None) -> Matches:
    """2-D search with aggregation over ``size`` x ``size`` centres (module docstring), exact float32 scores."""
    _, rows, cols = target.shape
    half, span = size // 2, 2 * radius + 1
    shifts_all = _row_candidates(target, ref, stride=stride, radius=radius, ref_bias=ref_bias, block=block,
                                 k=candidates, group=group)  # (K, 2, Ny, Nx)
    ref_hwc = ref.permute(1, 2, 0)  # (H, W, C) view of the channels-last features
    position = torch.zeros(2, rows, cols, device=target.device)
    score = torch.full((rows, cols), float("-inf"), device=target.device)
    key = lambda d: (d[..., 1] + radius) * span + d[..., 0] + radius  # noqa: E731  (dx, dy) -> one integer
    unkey = lambda k: torch.stack([k % span - radius, k // span - radius], 1)  # noqa: E731  (D,) -> (D, 2) (dx, dy)
    for m0 in range(0, rows, block):
        for n0 in range(0, cols, block):
            m1, n1 = min(m0 + block, rows), min(n0 + block, cols)
            e0, e1, f0, f1 = max(0, m0 - half), min(rows, m1 + half), max(0, n0 - half), min(cols, n1 + half)
            geometry = dict(stride=stride, rows_ext=(e0, e1), cols_ext=(f0, f1), rows_core=(m0, m1),
                            cols_core=(n0, n1), half=half)
            # every candidate of the block and its neighbourhood, once: (D, 2) as (dx, dy)
            keys = torch.unique(key(shifts_all[:, :, e0:e1, f0:f1].permute(0, 2, 3, 1).reshape(-1, 2)))
            shifts = unkey(keys)  # (D, 2)
            agg = _box_mean(target, ref_hwc, ref_bias, shifts, **geometry)  # (D, bh, bw)
            best, index = agg.max(dim=0)  # (bh, bw)
            chosen = shifts[index]  # (bh, bw, 2)
            cy = (torch.arange(m0, m1, device=target.device) * stride)[:, None]
            cx = (torch.arange(n0, n1, device=target.device) * stride)[None, :]
            px, py = (cx + chosen[..., 0]).float(), (cy + chosen[..., 1]).float()
            if subpixel:  # parabolas through the aggregated scores one step either side
                steps = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1]], device=target.device)
                around = chosen[None] + steps[:, None, None]  # (4, bh, bw, 2)
                near_keys, where = torch.unique(key(around).reshape(-1), return_inverse=True)
                near = unkey(near_keys)  # (D', 2)
                near_agg = _box_mean(target, ref_hwc, ref_bias, near, **geometry)  # (D', bh, bw)
                values = near_agg.gather(0, where.view(4, m1 - m0, n1 - n0))  # (4, bh, bw)
                values = values.masked_fill((around[..., 0].abs() > radius) | (around[..., 1].abs() > radius),
                                            float("-inf"))
                px = px + _parabola(values[0], best, values[1])
                py = py + _parabola(values[2], best, values[3])
            position[0, m0:m1, n0:n1], position[1, m0:m1, n0:n1] = px, py
            score[m0:m1, n0:n1] = best
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


def _match_line(target, ref, *, stride, search_range, ref_bias, direction, subpixel, aggregate: int = 1,
                rows_per_pass: int | None = None) -> Matches:
    """Epipolar 1-D search: candidates along ``direction`` through each centre, features sampled bilinearly.
    With ``aggregate`` > 1, each candidate step's score is averaged over the neighbouring centres first."""
    channels, rows, cols = target.shape
    _, height, width = ref.shape
    dx, dy = (float(d) for d in direction)
    norm = max(abs(dx), abs(dy))
    if norm == 0:
        raise ValueError("epipolar direction must be non-zero")
    dx, dy = dx / norm, dy / norm
    steps = torch.arange(-search_range, search_range + 1, device=target.device, dtype=torch.float32)  # (K,)
    # every step moves one whole pixel along the dominant axis, so each candidate is the linear interpolation of two
    # pixels across it (bilinear sampling with zero padding, align_corners, with one weight 0): two row gathers from
    # the (H*W, C) features and one batched product each. grid_sample's 4-tap bilinear cost 7.4 ms per centre row at
    # 512x512 on this CPU, this 3 ms, with the same scores up to rounding.
    ref_flat = ref.permute(1, 2, 0).reshape(height * width, channels).float()  # (H*W, C), once (bf16: 8x per row)
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
    if aggregate > 1:  # per step, the mean over the neighbouring centres whose candidate lies inside
        half = aggregate // 2
        scores = _present_mean(scores.permute(2, 0, 1), inside.permute(2, 0, 1), aggregate,
                               (half, half, half, half)).permute(1, 2, 0)  # (K, Ny, Nx) planes -> (Ny, Nx, K)
    scores = scores.masked_fill(~inside, float("-inf"))
    best, index = scores.max(dim=-1)  # (Ny, Nx)
    k = steps[index]
    if subpixel:
        minus = scores.gather(-1, (index - 1).clamp(min=0)[..., None])[..., 0]
        plus = scores.gather(-1, (index + 1).clamp(max=len(steps) - 1)[..., None])[..., 0]
        minus = torch.where(index > 0, minus, torch.full_like(minus, float("-inf")))
        plus = torch.where(index < len(steps) - 1, plus, torch.full_like(plus, float("-inf")))
        k = k + _parabola(minus, best, plus)
    ys = torch.arange(rows, device=target.device) * stride
    position = torch.stack([xs[None, :] + k * dx, ys[:, None] + k * dy])
    confidence = torch.exp(best - torch.logsumexp(scores, dim=-1))
    return Matches(stride, position.float(), best, confidence)
