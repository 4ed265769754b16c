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

from lfrefsr.models.ops import conv2d_act, max_pool_x2

GUIDE_CHANNELS = {"reference": 3, "estimate": 3, "trust": 1}  # hr_in_channels=7, in this order


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
        self.hr_head = nn.Conv2d(hr_in_channels, c, 3, padding=1)
        self.hr_blocks = nn.ModuleList([nn.Conv2d(c, c, 3, padding=1) for _ in range(levels)])
        # coarsest level: [F_LR, F_HR(L)]
        self.mask_coarse = nn.Conv2d(lr_channels + c, 1, 3, padding=1)
        self.fuse_coarse = nn.Conv2d(lr_channels + c, c, 3, padding=1)
        # finer levels, index 0 = level L-1 ... last = level 0
        self.subpixel = nn.ModuleList([nn.Conv2d(c, 4 * c, 3, padding=1) for _ in range(levels)])
        self.masks = nn.ModuleList([nn.Conv2d(c + c + 1, 1, 3, padding=1) for _ in range(levels)])
        self.fuses = nn.ModuleList([nn.Conv2d(c + c, c, 3, padding=1) for _ in range(levels)])
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        with torch.no_grad():  # small, not zero: every layer still gets a gradient on the first step
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()

    def hr_features(self, ref: torch.Tensor) -> list[torch.Tensor]:
        """(N, hr_in_channels, P, P) -> [F_HR(0) (N, c, P, P), F_HR(1) (N, c, P/2, P/2), ..., F_HR(L)]."""
        feats = [self.hr_head(ref)]
        for block in self.hr_blocks:
            feats.append(max_pool_x2(conv2d_act(feats[-1], block.weight, block.bias, padding=1, act="relu")))
        return feats

    def _mask(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (M_L carried to the next level, M)."""
        if self.mask_activation == "paper":
            carried = F.relu(logits)
            return carried, torch.sigmoid(carried)
        return logits, torch.sigmoid(logits)

    @staticmethod
    def _conv_pair(conv: nn.Conv2d, first: torch.Tensor, second: torch.Tensor, act: str = "none") -> torch.Tensor:
        """``act(conv(cat([first, second], 1)))`` as two convolutions on the weight's halves, summed: the same
        result without writing the concatenated input (at 512x512: 30 ms instead of 8 ms cat + 28 ms conv); the sum
        and ``act`` are post-ops of the second convolution where ``conv2d_act`` fuses them."""
        split = first.shape[1]
        second_half = F.conv2d(second, conv.weight[:, split:], None, padding=conv.padding)
        return conv2d_act(first, conv.weight[:, :split], conv.bias, padding=conv.padding, act=act, other=second_half)

    @staticmethod
    def _conv_to_one(conv: nn.Conv2d, parts: list[torch.Tensor]) -> torch.Tensor:
        """``conv(cat(parts, 1))`` for a k x k convolution with one output channel (the masks), without writing the
        concatenated input: a 1x1 product per part gives the k*k taps of every pixel (a one-channel part is one
        broadcast multiply), then each tap is added at its offset. oneDNN runs a one-output 3x3 convolution at about
        18 GFLOP/s: at 64 patches of 64x64 with 65 input channels this takes 10 ms instead of 28 ms (cat +
        convolution), and the whole-image SS-Net at 512x512 0.13 s instead of 0.155 s; same result to 3e-6.
        In bfloat16 (whole image, 512x512) the stage takes 0.045 s this way and 0.049 s with cat + convolution.
        On a GPU, bound by kernel launches at these sizes, the concatenation and one convolution stay (an H200 took
        0.004 s per 512x512 SS-Net with the taps against 0.002 s without)."""
        if parts[0].device.type != "cpu":
            return conv(torch.cat(parts, 1))
        k, pad = conv.kernel_size[0], conv.padding[0]
        taps_weight = conv.weight[0].permute(1, 2, 0).reshape(k * k, -1, 1, 1)  # (k*k, C, 1, 1): tap t = k*ky + kx
        taps, start = None, 0
        for part in parts:  # taps (N, k*k, H, W)
            stop = start + part.shape[1]
            weight = taps_weight[:, start:stop]
            if part.shape[1] == 1 and taps is not None:
                taps.addcmul_(part, weight.to(taps.dtype).view(1, k * k, 1, 1))
            else:
                term = F.conv2d(part, weight)
                taps = term if taps is None else taps.add_(term)
            start = stop
        height, width = taps.shape[-2:]
        taps = F.pad(taps, (pad, pad, pad, pad)).contiguous()  # (N, k*k, H+2p, W+2p), planar for the shifted adds
        out = taps[:, :1, :height, :width] + conv.bias.to(taps.dtype).view(1, 1, 1, 1)  # (N, 1, H, W)
        for t in range(1, k * k):
            ky, kx = divmod(t, k)
            out += taps[:, t : t + 1, ky : ky + height, kx : kx + width]
        return out

    def forward(self, lr_features: torch.Tensor, ref: torch.Tensor, base: torch.Tensor | None = None):
        hr = self.hr_features(ref)  # L+1 maps, finest first
        coarse = hr[self.levels]  # (N, c, p, p): the LR patch's scale
        mask_logit, mask = self._mask(self.mask_coarse(torch.cat([lr_features, coarse], 1)))
        fused = conv2d_act(torch.cat([lr_features, coarse * mask], 1), self.fuse_coarse.weight, self.fuse_coarse.bias,
                           padding=1, act=self.fuse_activation)
        for k in range(self.levels):  # level i = L-1-k, twice the resolution each time
            hr_i = hr[self.levels - 1 - k]
            sub = F.pixel_shuffle(self.subpixel[k](fused), 2)  # SP(F_fuse(i+1)): (N, c, 2h, 2w)
            carried = F.interpolate(mask_logit, scale_factor=2, mode="nearest")
            mask_logit, mask = self._mask(self._conv_to_one(self.masks[k], [sub, hr_i, carried]))
            fused = self._conv_pair(self.fuses[k], F.interpolate(fused, scale_factor=2, mode="nearest"), hr_i * mask,
                                    act=self.fuse_activation)
        sr = self.out(fused)
        if self.residual and base is not None:
            sr = sr + base
        return sr, mask
