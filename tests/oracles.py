"""Test oracles: plain, slow implementations the fast code is checked against."""

import torch


def brute_force(target: torch.Tensor, ref: torch.Tensor, *, stride: int, search_range: int,
                ref_bias: torch.Tensor | None = None, aggregate: int = 1) -> torch.Tensor:
    """The correspondence engine by brute force: (2, Ny, Nx) best integer position, every centre's whole window scored
    directly, aggregated over ``aggregate`` x ``aggregate`` centres by explicit loops."""
    _, rows, cols = target.shape
    _, height, width = ref.shape
    radius, half = search_range, aggregate // 2
    shifts = torch.arange(-radius, radius + 1)
    raw = torch.zeros(rows, cols, len(shifts), len(shifts))  # (Ny, Nx, dy, dx)
    inside = torch.zeros(rows, cols, len(shifts), len(shifts), dtype=torch.bool)
    for m in range(rows):
        for n in range(cols):
            py, px = (m * stride + shifts)[:, None], (n * stride + shifts)[None, :]  # (D, 1), (1, D)
            inside[m, n] = (py >= 0) & (py < height) & (px >= 0) & (px < width)
            cy, cx = py.clamp(0, height - 1), px.clamp(0, width - 1)
            raw[m, n] = torch.einsum("c,cyx->yx", target[:, m, n].float(), ref[:, cy, cx].float())
            if ref_bias is not None:
                raw[m, n] += ref_bias[cy, cx].float()
    out = torch.zeros(2, rows, cols)
    for m in range(rows):
        for n in range(cols):
            total, count = torch.zeros(len(shifts), len(shifts)), torch.zeros(len(shifts), len(shifts))
            for i in range(max(0, m - half), min(rows, m + half + 1)):
                for j in range(max(0, n - half), min(cols, n + half + 1)):
                    total += raw[i, j].masked_fill(~inside[i, j], 0.0)
                    count += inside[i, j]
            scores = (total / count.clamp_min(1)).masked_fill(~inside[m, n], float("-inf"))
            index = int(scores.flatten().argmax())
            out[0, m, n] = n * stride + shifts[index % len(shifts)]
            out[1, m, n] = m * stride + shifts[index // len(shifts)]
    return out
