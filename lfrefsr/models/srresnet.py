"""SRResNet + NN: SRResNet (Ledig et al. 2017) with nearest-neighbour instead of sub-pixel upsampling (RefSR-Net
section 4, "SRResNet + NN"). Its features before upsampling are SS-Net's LR features.

Structure::

    head        conv 9x9 (in -> features) + PReLU
    body        num_blocks x [conv 3x3 + BN + PReLU + conv 3x3 + BN, skip]; conv 3x3 + BN; global skip
    upsample    log2(scale) x [nearest x2, conv 3x3 (-> up_features[i]) + PReLU]
    tail        conv 9x9 (-> in)
    output      tail(...) + bicubic(lr) when ``residual`` (a deviation that trains faster on a CPU)

Arguments:
    scale: 2, 4 or 8 (powers of two).
    num_blocks: residual blocks (16).
    features: width of the body (64).
    up_features: widths of the upsampling stages; default halves per stage from ``features`` (64, 32, 16 at x8),
        which keeps the x4 and x8 stages affordable on a CPU (the original keeps 64 everywhere).
    batch_norm: BN in the residual blocks (SRResNet has it).
    residual: add the bicubic upsampling of the input to the output.

Shapes: ``features(lr)`` (N, 3, h, w) -> (N, features, h, w); ``forward(lr)`` -> (N, 3, h*scale, w*scale).
The parameter names (``head``, ``body.i.body``, ``body_tail``, ``upsample``, ``tail``) are those of the shipped
weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class ResidualBlock(nn.Module):
    """x + [conv 3x3 + BN + PReLU + conv 3x3 + BN](x): (N, C, h, w) -> (N, C, h, w)."""

    def __init__(self, features: int, batch_norm: bool):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(features)) if batch_norm else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1), norm(), nn.PReLU(features),
            nn.Conv2d(features, features, 3, padding=1), norm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)



class SRResNetNN(nn.Module):
    def __init__(
        self,
        *,
        scale: int = 8,
        num_blocks: int = 16,
        features: int = 64,
        up_features: tuple[int, ...] | None = None,
        batch_norm: bool = True,
        residual: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        stages = int(round(math.log2(scale)))
        if 2**stages != scale:
            raise ValueError(f"scale must be a power of two, got {scale}")
        self.scale, self.residual, self.features_out = scale, residual, features
        up_features = tuple(up_features) if up_features is not None else tuple(
            max(16, features // 2**i) for i in range(stages))
        if len(up_features) != stages:
            raise ValueError(f"up_features needs {stages} entries for scale {scale}")
        self.head = nn.Sequential(nn.Conv2d(in_channels, features, 9, padding=4), nn.PReLU(features))
        self.body = nn.Sequential(*[ResidualBlock(features, batch_norm) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(features, features, 3, padding=1),
                                       nn.BatchNorm2d(features) if batch_norm else nn.Identity())
        ups, previous = [], features
        for width in up_features:
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(previous, width, 3, padding=1),
                    nn.PReLU(width)]
            previous = width
        self.upsample = nn.Sequential(*ups)
        self.tail = nn.Conv2d(previous, in_channels, 9, padding=4)

    def features(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N, features, h, w): the LR features SS-Net uses (before upsampling)."""
        head = self.head(lr)
        return head + self.body_tail(self.body(head))  # the global skip

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N, 3, h*scale, w*scale)."""
        sr = self.tail(self.upsample(self.features(lr)))
        if self.residual:
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr
