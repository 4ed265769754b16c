"""The 2-D search, streamed: each centre's best reference rows within its window, without a cost volume.

Per column of B centres, a group of G reference rows is scored in one matrix product against every centre row that
reaches it, each centre's best is taken within its own window only (``_row_maxima``) and kept if it beats the groups
before. The full cost volume of a large image is never held (peak memory ~ G (2R + stride B) (G + 2R) B / stride
scores).
"""

from __future__ import annotations

import functools

import torch


def _window_scores(ref_hwc, feats, ref_bias, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    """Scores of the reference window ``ref_hwc[y0:y1, x0:x1]`` ((H, W, C), channels-last features) against centre
    features ``feats`` (C, N), plus the window's bias -> (h, w, N), fresh."""
    (y0, y1), (x0, x1) = rows, cols
    window = ref_hwc[y0:y1, x0:x1]  # (h, w, C) view, rows strided
    # the faster of the two on the CPU for each dtype, with the same scores (benchmarks/README.md, "Kernels and engine")
    if window.dtype == torch.float32:  # one product per window row, straight from the strided view, no copy
        scores = torch.bmm(window, feats.expand(y1 - y0, -1, -1))  # (h, w, N); matmul would copy the window slowly
    else:  # bfloat16: one product over a contiguous copy beats a batched one over the strided view
        scores = torch.matmul(window.contiguous(), feats)  # (h, w, N)
    if ref_bias is not None:
        scores += ref_bias[y0:y1, x0:x1, None].to(scores.dtype)
    return scores


def block_scores(target, ref, *, stride: int, radius: int, ref_bias, block: int):
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


def best_rows(target, ref, *, stride: int, radius: int, ref_bias, block: int, k: int, group: int | None = None):
    """Each centre's ``k`` best window rows, each with its best column, best first: (scores (k, Ny, Nx) float32,
    position (k, 2, Ny, Nx) long reference (x, y)); -inf scores where a window has fewer than ``k`` rows.

    The reference is streamed once per column of ``block`` centres, ``group`` window rows at a time. Each group is
    scored in one product against every centre row whose range reaches it (about (group + 2 radius) / stride rows
    of ``block`` centres), so a reference row is read once per block column, not once per block of centres whose
    windows hold it, and the product has hundreds of columns instead of block^2. Rows outside a centre's range are
    masked after the product (``_row_maxima``): (group + 2 radius) / (2 radius + 1) - 1 of the product is waste,
    15 % at the CPU's 32 rows. Fewer FLOPs than scoring each block of centres against the union of its windows, at
    a higher rate (benchmarks/README.md, "Kernels and engine").
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
    either side of the runs are read on their own: one block-sized pass where a masked pass over the whole block and
    its maximum take three, with the same maxima."""
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
