"""CC-Net: the cross-scale correspondence network of RefSR-Net (BMVC 2017, Table 1).

A siamese stack of dilated 3x3 convolutions (+ BatchNorm + ReLU) and a final 1x1 convolution that embeds an image
into one feature vector per pixel, with a receptive field of 65 pixels and no down-sampling, so the features are
exactly translation-equivariant. Matching scores are inner products of features (Eq. 1 softmaxes them over a
search window).

Default (Table 1)::

    layer   kernel  channels  dilation  receptive field
    conv1   3x3     16        1         3
    conv2   3x3     32        1         5
    conv3   3x3     64        2         9
    conv4   3x3     64        4         17
    conv5   3x3     64        8         33
    conv6   3x3     128       16        65
    fc      1x1     256       1         65

Arguments:
    channels: output channels of the dilated layers (Table 1: 16, 32, 64, 64, 64, 128).
    dilations: dilation of each layer (Table 1: 1, 1, 2, 4, 8, 16).
    out_channels: feature size (Table 1: 256).
    width: multiplier on ``channels`` (a CPU config may use less than 1).
    siamese: one set of weights for both inputs (True, the paper's choice) or two (pseudo-siamese).
    normalize: L2-normalise features and scale by a learned temperature (cosine scores); False is the paper.
    batch_norm: BatchNorm after each dilated convolution (the paper). Without it the convolutions have biases and
        training and inference compute exactly the same function (BN's per-batch statistics in training differ
        from its running statistics at inference, which costs a CPU recipe with one image pair per step dearly).
    input_norm: "none" (the paper) or "local": each input channel minus its Gaussian-weighted local mean, divided
        by its local standard deviation (sigma ``input_norm_sigma`` pixels), the contrast invariance ZNCC has.
    in_channels: 3 (RGB).

Shapes: ``forward(image, branch)`` maps (N, 3, H, W) -> (N, out_channels, H, W).
``features_on_grid(image, stride, branch)`` gives the same features at pixels (stride*m, stride*n) only,
(N, out_channels, ceil(H/stride), ceil(W/stride)), at a fraction of the cost, exactly equal to
``forward(image)[..., ::stride, ::stride]`` when ``stride`` is a power of two no larger than the dilations allow.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lfrefsr.filters import gaussian_kernel, separable_blur
from lfrefsr.models.ops import conv2d_act, fold_batch_norm

TABLE1_CHANNELS = (16, 32, 64, 64, 64, 128)
TABLE1_DILATIONS = (1, 1, 2, 4, 8, 16)


class LocalContrastNorm(nn.Module):
    """(x - local mean) / (local std + eps) per channel, Gaussian window of ``sigma`` px; a fixed (buffer) kernel.
    Computed in float32 outside autocast (``separable_blur``); the output is channels-last for the first conv."""

    def __init__(self, sigma: float, eps: float = 0.02):
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel(sigma), persistent=False)
        self.radius = (self.kernel.numel() - 1) // 2  # ceil(3 sigma)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            centred = x - separable_blur(x, self.kernel)
            variance = separable_blur(centred * centred, self.kernel)
            if torch.is_grad_enabled():
                return (centred / (variance.clamp_min(0).sqrt() + self.eps)).contiguous(
                    memory_format=torch.channels_last)
            # inference: in place on the fresh blur, and the quotient written channels-last at once (no copy after)
            std = variance.clamp_min_(0).sqrt_().add_(self.eps)
            return torch.div(centred, std, out=torch.empty_like(centred, memory_format=torch.channels_last))


class _Tower(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...], dilations: tuple[int, ...], out_channels: int,
                 batch_norm: bool = True):
        super().__init__()
        self.dilations = tuple(dilations)
        convs, norms = [], []
        previous = in_channels
        for width in channels:
            convs.append(nn.Conv2d(previous, width, 3, bias=not batch_norm))
            norms.append(nn.BatchNorm2d(width) if batch_norm else nn.Identity())
            previous = width
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.fc = nn.Conv2d(previous, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for conv, norm, dilation in zip(self.convs, self.norms, self.dilations, strict=True):
            x = self._conv_relu(x, conv, norm, padding=dilation, dilation=dilation)
        return self._pointwise(x)

    @staticmethod
    def _conv_relu(x: torch.Tensor, conv: nn.Conv2d, norm: nn.Module, **geometry) -> torch.Tensor:
        """relu(norm(conv(x))); without BatchNorm the ReLU is the convolution's post-op (``conv2d_act``)."""
        if isinstance(norm, nn.Identity):
            return conv2d_act(x, conv.weight, conv.bias, act="relu", **geometry)
        return F.relu(norm(F.conv2d(x, conv.weight, conv.bias, **geometry)), inplace=True)  # fresh: in place

    def _pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """The final 1x1 convolution. On a channels-last input it is one matrix product over the pixels: the same
        numbers, 2-3x faster on CPU than oneDNN's 1x1 convolution (128 -> 256 channels: 139 against ~300 GFLOP/s in
        float32), and the output stays channels-last."""
        if not x.is_contiguous(memory_format=torch.channels_last) or x.shape[1] == 1:
            return self.fc(x)
        weight = self.fc.weight.flatten(1)  # (out, in, 1, 1) -> (out, in)
        pixels = x.permute(0, 2, 3, 1)  # (N, C, H, W) channels-last -> (N, H, W, C), a view
        # the bias added after the product: addmm first copies the bias into every output row, a whole extra pass
        out = torch.matmul(pixels, weight.t())  # (N, H, W, out)
        out.add_(self.fc.bias.to(out.dtype))  # same dtype: a mixed bf16 + fp32 add_ took 110 ms per 512x512 reference
        return out.permute(0, 3, 1, 2)  # (N, H, W, out) -> (N, out, H, W), channels-last

    def forward_on_grid(self, image: torch.Tensor, stride: int) -> torch.Tensor:
        """Features at pixels (stride*m, stride*n) only.

        A dilation-d layer evaluated on a grid of spacing g only reads its input on that grid when g divides d;
        so each layer runs on the coarsest grid its successors still need, as a plain strided convolution with
        dilation d/g. Zero padding lands on the same (out-of-image) positions as in the dense network.
        """
        need = [stride]  # grid spacing each layer's *output* is needed on
        for dilation in reversed(self.dilations[1:]):
            need.insert(0, math.gcd(need[0], dilation))
        x, spacing = image, 1  # spacing of x's grid in input pixels
        for conv, norm, dilation, out_spacing in zip(self.convs, self.norms, self.dilations, need, strict=True):
            step = out_spacing // spacing
            x = self._conv_relu(x, conv, norm, stride=step, padding=dilation // spacing, dilation=dilation // spacing)
            spacing = out_spacing
        if spacing != stride:  # the subsampled grid, made channels-last again for the pointwise matrix product
            x = x[..., :: stride // spacing, :: stride // spacing].contiguous(memory_format=torch.channels_last)
        return self._pointwise(x)


class CCNet(nn.Module):
    def __init__(
        self,
        *,
        channels: tuple[int, ...] = TABLE1_CHANNELS,
        dilations: tuple[int, ...] = TABLE1_DILATIONS,
        out_channels: int = 256,
        width: float = 1.0,
        siamese: bool = True,
        normalize: bool = False,
        batch_norm: bool = True,
        input_norm: str = "none",
        input_norm_sigma: float = 8.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(channels) != len(dilations):
            raise ValueError("channels and dilations need one entry per layer")
        widths = tuple(max(1, round(c * width)) for c in channels)
        self.siamese, self.normalize = siamese, normalize
        self.out_channels = out_channels
        if input_norm not in ("none", "local"):
            raise ValueError("input_norm is 'none' or 'local'")
        self.input_norm = LocalContrastNorm(input_norm_sigma) if input_norm == "local" else None
        # pixels on each side that influence a feature: the convolutions', plus the input normalisation window's
        self.halo = sum(dilations) + (self.input_norm.radius * 2 if self.input_norm is not None else 0)
        self.receptive_field = 1 + 2 * sum(dilations)
        self.lr_tower = _Tower(in_channels, widths, dilations, out_channels, batch_norm)
        self.ref_tower = self.lr_tower if siamese else _Tower(in_channels, widths, dilations, out_channels, batch_norm)
        # Cosine scores need a temperature; log-parametrised so it stays positive. Unused when normalize=False.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0)), requires_grad=normalize)

    def fold_batch_norm(self) -> CCNet:
        """Inference (eval mode): fold every BatchNorm into its convolution (``ops.fold_batch_norm``); self."""
        for tower in {id(self.lr_tower): self.lr_tower, id(self.ref_tower): self.ref_tower}.values():
            fold_batch_norm(tower.convs, tower.norms)
        return self

    def _tower(self, branch: str) -> _Tower:
        if branch not in ("lr", "ref"):
            raise ValueError("branch is 'lr' (upsampled LR target) or 'ref' (HR reference)")
        return self.lr_tower if branch == "lr" else self.ref_tower

    def _finish(self, features: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return features
        # sqrt of the temperature on each side: <f, g> = temperature * cosine. One multiply by a per-pixel factor
        # (F.normalize's division, then a second multiply, each wrote the whole feature map again)
        norm = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)  # (N, 1, H, W)
        factor = (self.log_temperature.exp().sqrt() / norm).to(features.dtype)  # bf16 stays bf16
        if torch.is_grad_enabled():
            return features * factor
        # inference: in place on the fresh output layer result; a new 256-channel map of a 512x512 reference is
        # 268 MB of fresh pages (above the mmap threshold), which cost as much as the multiply itself
        return features.mul_(factor)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return self.input_norm(image) if self.input_norm is not None else image

    def forward(self, image: torch.Tensor, branch: str = "lr") -> torch.Tensor:
        """(N, 3, H, W) -> (N, out_channels, H, W) dense features."""
        return self._finish(self._tower(branch)(self._prepare(image)))

    def features_on_grid(self, image: torch.Tensor, stride: int, branch: str = "lr") -> torch.Tensor:
        """(N, 3, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride)) at pixels (stride*m, stride*n)."""
        return self._finish(self._tower(branch).forward_on_grid(self._prepare(image), stride))
