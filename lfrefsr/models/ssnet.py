"""SS-Net: the super-resolution synthesis network of RefSR-Net (BMVC 2017, section 4, Eq. 2).

Per patch, SS-Net fuses the LR features of an LR patch (from the frozen SRResNet + NN body) with multi-scale
features of the reference patch that CC-Net matched to it, from the coarsest scale to full resolution:

HR feature module: conv 3x3 -> F_HR(0) (scale 1), then ``levels`` x [conv 3x3 + ReLU + 2x max-pool] ->
F_HR(1..L) (scales 1/2 .. 1/2^L; L = log2(scale), 3 for x8).

Prediction module (Eq. 2), k = L at the LR scale, then i = L-1 .. 0::

    M_L(L)   = relu([F_LR, F_HR(L)] * W_mask(L))                      M(L) = sig(M_L(L))
    F_fuse(L) = act([F_LR, F_HR(L) . M(L)] * W_fuse(L))
    M_L(i)   = relu([SP(F_fuse(i+1)), F_HR(i), up(M_L(i+1))] * W_mask(i))   M(i) = sig(M_L(i))
    F_fuse(i) = act([up(F_fuse(i+1)), F_HR(i) . M(i)] * W_fuse(i))

SP is a x2 sub-pixel upsampling (conv + pixel shuffle), ``up`` nearest x2, ``.`` element-wise product; the output
is a 3x3 convolution of F_fuse(0).

Variants (arguments):
    mask_activation: "paper" -- literally sig(relu(.)), which keeps every mask in [0.5, 1) so an occlusion can
        never be switched off; "sigmoid" (default) -- M_L is the linear logit, M = sig(M_L) in (0, 1).
    fuse_activation: "sigmoid" (the paper's delta) or "relu" (default).
    residual: add ``base`` (the SISR or bicubic upsampling of the LR patch) to the output (default True; the
        paper predicts the image directly).

    hr_in_channels: channels of the HR input. 3 (the paper): the reference patch. 7 (refsr's default variant):
        the reference already aligned to the target, stacked with the flowwarp estimate (3) and its trust map (1),
        so the network sees where the alignment failed (``GUIDE_CHANNELS``).

Arguments: scale (2, 4, 8), lr_channels (64: SRResNet width), features (64), hr_in_channels (3), and the variants
above. The output convolution starts near zero, so a residual network starts as its base.
Shapes: ``forward(lr_features (N, Cl, p, p), ref (N, hr_in_channels, p*s, p*s), base=None)`` ->
``(sr (N, 3, p*s, p*s), mask (N, 1, p*s, p*s))`` where mask is M(0), the occlusion confidence. Fully
convolutional: p may be a whole image's LR height and width (refsr's default variant runs it so).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

GUIDE_CHANNELS = {"reference": 3, "estimate": 3, "trust": 1}  # hr_in_channels=7, in this order


class ConcatConv2d(nn.Conv2d):
    """``[a, b, ...] * W``: a convolution of its inputs stacked along channels, ``conv(cat(inputs, 1))``."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.cat(inputs, 1))


class SSNet(nn.Module):
    def __init__(
        self,
        *,
        scale: int = 8,
        lr_channels: int = 64,
        features: int = 64,
        mask_activation: str = "sigmoid",
        fuse_activation: str = "relu",
        residual: bool = True,
        hr_in_channels: int = 3,
    ):
        super().__init__()
        levels = int(round(math.log2(scale)))
        if 2**levels != scale or levels < 1:
            raise ValueError(f"scale must be 2, 4 or 8, got {scale}")
        if mask_activation not in ("paper", "sigmoid") or fuse_activation not in ("sigmoid", "relu"):
            raise ValueError("mask_activation is 'paper' or 'sigmoid'; fuse_activation 'sigmoid' or 'relu'")
        self.scale, self.levels, self.residual = scale, levels, residual
        self.mask_activation, self.fuse_activation = mask_activation, fuse_activation
        c = features
        self.hr_in_channels = hr_in_channels
        # HR feature module
        self.hr_head = nn.Conv2d(hr_in_channels, c, 3, padding=1)
        self.hr_blocks = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(levels)])
        self.hr_act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        # prediction module, coarsest level: [F_LR, F_HR(L)]
        self.mask_coarse = ConcatConv2d(lr_channels + c, 1, 3, padding=1)
        self.fuse_coarse = ConcatConv2d(lr_channels + c, c, 3, padding=1)
        # finer levels, index 0 = level L-1 ... last = level 0
        self.subpixel = nn.ModuleList([nn.Conv2d(c, 4 * c, 3, padding=1) for _ in range(levels)])
        self.masks = nn.ModuleList([ConcatConv2d(c + c + 1, 1, 3, padding=1) for _ in range(levels)])
        self.fuses = nn.ModuleList([ConcatConv2d(c + c, c, 3, padding=1) for _ in range(levels)])
        self.fuse_act = nn.ReLU(inplace=True) if fuse_activation == "relu" else nn.Sigmoid()  # delta in Eq. 2
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        with torch.no_grad():  # small, not zero: every layer still gets a gradient on the first step
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()

    def hr_features(self, ref: torch.Tensor) -> list[torch.Tensor]:
        """(N, hr_in_channels, P, P) -> [F_HR(0) (N, c, P, P), F_HR(1) (N, c, P/2, P/2), ..., F_HR(L)]."""
        feats = [self.hr_head(ref)]
        for block in self.hr_blocks:
            feats.append(self.pool(self.hr_act(block(feats[-1]))))
        return feats

    def _mask(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, h, w) -> (M_L carried to the next level, M), each (N, 1, h, w)."""
        if self.mask_activation == "paper":
            carried = F.relu(logits)
            return carried, torch.sigmoid(carried)
        return logits, torch.sigmoid(logits)

    def forward(self, lr_features: torch.Tensor, ref: torch.Tensor, base: torch.Tensor | None = None):
        """lr_features (N, Cl, p, p), ref (N, hr_in_channels, p*s, p*s), base None or (N, 3, p*s, p*s) ->
        (sr (N, 3, p*s, p*s), M(0) (N, 1, p*s, p*s))."""
        hr = self.hr_features(ref)  # L+1 maps, finest first
        coarse = hr[self.levels]  # F_HR(L) (N, c, p, p): the LR patch's scale
        mask_logit, mask = self._mask(self.mask_coarse(lr_features, coarse))
        fused = self.fuse_act(self.fuse_coarse(lr_features, coarse * mask))  # F_fuse(L) (N, c, p, p)
        for k in range(self.levels):  # level i = L-1-k, twice the resolution each time
            hr_i = hr[self.levels - 1 - k]  # F_HR(i) (N, c, 2h, 2w)
            sub = F.pixel_shuffle(self.subpixel[k](fused), 2)  # SP(F_fuse(i+1)): (N, 4c, h, w) -> (N, c, 2h, 2w)
            carried = F.interpolate(mask_logit, scale_factor=2, mode="nearest")  # up(M_L(i+1)) (N, 1, 2h, 2w)
            mask_logit, mask = self._mask(self.masks[k](sub, hr_i, carried))
            up = F.interpolate(fused, scale_factor=2, mode="nearest")  # up(F_fuse(i+1)) (N, c, 2h, 2w)
            fused = self.fuse_act(self.fuses[k](up, hr_i * mask))  # F_fuse(i)
        sr = self.out(fused)
        if self.residual and base is not None:
            sr = sr + base
        return sr, mask
