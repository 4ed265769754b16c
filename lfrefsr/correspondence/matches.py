"""``Matches``: what every matcher returns, one match per centre of the ``stride`` grid."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Matches:
    """One match per centre. All tensors are (Ny, Nx) or (2, Ny, Nx); positions are (x, y) reference pixels."""

    stride: int
    position: torch.Tensor  # (2, Ny, Nx) float: matched reference pixel (x, y), sub-pixel if refined
    score: torch.Tensor  # (Ny, Nx) best score
    confidence: torch.Tensor  # (Ny, Nx) softmax probability of the best candidate within the window

    @property
    def centres(self) -> torch.Tensor:
        """(2, Ny, Nx) HR pixel (x, y) of each centre, on the positions' device."""
        _, rows, cols = self.position.shape
        device = self.position.device
        ys = torch.arange(rows, dtype=torch.float32, device=device) * self.stride
        xs = torch.arange(cols, dtype=torch.float32, device=device) * self.stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # each (Ny, Nx)
        return torch.stack([grid_x, grid_y])

    @property
    def flow(self) -> torch.Tensor:
        """(2, Ny, Nx): matched position minus centre (the SPEC flow convention)."""
        return self.position - self.centres

    def dense_flow(self, size: tuple[int, int]) -> torch.Tensor:
        """The flow at every HR pixel of an image of ``size`` (H, W) -> (2, H, W): bilinear between the centres
        (HR pixels ``stride * i``), held beyond the last ones."""
        from lfrefsr.warp import sample

        flow = self.flow.float()  # (2, Ny, Nx)
        _, rows, cols = flow.shape
        height, width = size
        ys = (torch.arange(height, dtype=torch.float32, device=flow.device) / self.stride).clamp(max=rows - 1)
        xs = (torch.arange(width, dtype=torch.float32, device=flow.device) / self.stride).clamp(max=cols - 1)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")  # each (H, W), in centre units
        return sample(flow[None], torch.stack([grid_x, grid_y])[None])[0]  # (2, H, W)
