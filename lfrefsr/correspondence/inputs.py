"""What CC-Net sees: the LR target bilinearly upsampled (as the paper), and the reference -- the HR image itself
(``hr``, the paper) or the HR image put through the same degradation and upsampling as the target (``blurred``),
so that both branches see the same frequencies."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from lfrefsr import protocol


class ReferenceInput(str, Enum):
    HR = "hr"
    BLURRED = "blurred"


def upsample_bilinear(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, *size), bilinear, align_corners=False (pixel centres as in the protocol)."""
    return F.interpolate(lr, size=size, mode="bilinear", align_corners=False)


def lr_input(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 3, h, w) LR -> (N, 3, h*scale, w*scale) CC-Net input."""
    return upsample_bilinear(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))


def ref_input(ref: torch.Tensor, scale: int, mode: ReferenceInput | str) -> torch.Tensor:
    """(N, 3, H, W) HR reference (H, W multiples of scale) -> CC-Net input of the same size."""
    if ReferenceInput(mode) == ReferenceInput.HR:
        return ref
    return upsample_bilinear(protocol.downsample(ref, scale), ref.shape[-2:])
