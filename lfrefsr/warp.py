"""The one warp function of the package: backward warping with ``F.grid_sample``.

Flow convention (SPEC): a flow ``(u, v)`` at target pixel ``(x, y)`` points at source pixel ``(x+u, y+v)``.
Pixel centres are at integer coordinates, so the normalisation uses ``align_corners=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel-centre coordinates, shape (2, H, W): channel 0 is x, channel 1 is y."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # each (H, W)
    return torch.stack([grid_x, grid_y], dim=0)


def sample(
    image: torch.Tensor,
    coords: torch.Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """Sample ``image`` (N, C, Hs, Ws) at absolute pixel coordinates ``coords`` (N, 2, H, W) -> (N, C, H, W)."""
    _, _, height_src, width_src = image.shape  # (N, C, Hs, Ws)
    coord_x = coords[:, 0] * (2.0 / max(width_src - 1, 1)) - 1.0  # (N, H, W)
    coord_y = coords[:, 1] * (2.0 / max(height_src - 1, 1)) - 1.0
    grid = torch.stack([coord_x, coord_y], dim=-1)  # (N, H, W, 2), grid_sample's (x, y) order
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode=padding_mode, align_corners=True)


def warp(
    source: torch.Tensor,
    flow: torch.Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "border",
) -> torch.Tensor:
    """Backward-warp ``source`` (N, C, Hs, Ws) by ``flow`` (N, 2, H, W) into the target frame (N, C, H, W).

    ``out[..., y, x] = source[..., y + flow[1, y, x], x + flow[0, y, x]]``.
    """
    n, _, height, width = flow.shape  # (N, 2, H, W)
    base = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)  # (2, H, W)
    return sample(source, base.unsqueeze(0) + flow, mode=mode, padding_mode=padding_mode)


def out_of_bounds(flow: torch.Tensor, source_hw: tuple[int, int]) -> torch.Tensor:
    """Boolean (N, H, W): where the flow points outside the source image."""
    _, _, height, width = flow.shape
    base = pixel_grid(height, width, device=flow.device, dtype=flow.dtype)
    target = base.unsqueeze(0) + flow  # (N, 2, H, W)
    height_src, width_src = source_hw
    return (
        (target[:, 0] < 0) | (target[:, 0] > width_src - 1) | (target[:, 1] < 0) | (target[:, 1] > height_src - 1)
    )
