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

import copy
import math

import torch
import torch.nn as nn

from lfrefsr.filters import gaussian_kernel, separable_blur

TABLE1_CHANNELS = (16, 32, 64, 64, 64, 128)
TABLE1_DILATIONS = (1, 1, 2, 4, 8, 16)


class LocalContrastNorm(nn.Module):
    """(x - local mean) / (local std + eps) per channel, Gaussian window of ``sigma`` px; a fixed (buffer) kernel.
    (N, C, H, W) -> (N, C, H, W) float32, channels-last (the layout of the convolutions that follow)."""

    def __init__(self, sigma: float, eps: float = 0.02):
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel(sigma), persistent=False)
        self.radius = (self.kernel.numel() - 1) // 2  # ceil(3 sigma)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # statistics in float32, also under bf16 autocast
            x = x.float()
            centred = x - separable_blur(x, self.kernel)
            std = separable_blur(centred * centred, self.kernel).clamp_min(0).sqrt()
            return (centred / (std + self.eps)).contiguous(memory_format=torch.channels_last)


class CosineScale(nn.Module):
    """Each pixel's feature vector scaled to ``length``: (N, C, H, W), a 0-d tensor -> (N, C, H, W). With length
    sqrt(temperature) on both sides, <f, g> = temperature * cosine(f, g). One multiply by a per-pixel factor:
    ``F.normalize`` and a second multiply would each write the whole feature map again."""

    def forward(self, features: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)  # (N, 1, H, W)
        return features * (length / norm).to(features.dtype)  # bf16 stays bf16


def _on_grid(conv: nn.Conv2d, stride: int, dilation: int) -> nn.Conv2d:
    """``conv`` (a 3x3 layer) with the same parameters at another stride and dilation (padding = dilation)."""
    view = copy.copy(conv)  # a shallow copy shares the parameters; the geometry is its own
    view.stride, view.padding, view.dilation = (stride, stride), (dilation, dilation), (dilation, dilation)
    return view


class _Tower(nn.Module):
    """One branch: ``len(channels)`` x [conv 3x3 (dilation d) + BN + ReLU], then the 1x1 ``fc``.
    (N, in_channels, H, W) -> (N, out_channels, H, W)."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], dilations: tuple[int, ...], out_channels: int,
                 batch_norm: bool = True):
        super().__init__()
        self.dilations = tuple(dilations)
        convs, norms = [], []
        previous = in_channels
        for width, dilation in zip(channels, dilations, strict=True):
            convs.append(nn.Conv2d(previous, width, 3, padding=dilation, dilation=dilation, bias=not batch_norm))
            norms.append(nn.BatchNorm2d(width) if batch_norm else nn.Identity())
            previous = width
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Conv2d(previous, out_channels, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.act(norm(conv(x)))  # same size: padding = dilation
        return self.fc(x)

    def forward_on_grid(self, image: torch.Tensor, stride: int) -> torch.Tensor:
        """Features at pixels (stride*m, stride*n) only: (N, C, H, W) -> (N, out, ceil(H/stride), ceil(W/stride)).

        A dilation-d layer evaluated on a grid of spacing g only reads its input on that grid when g divides d;
        so each layer runs on the coarsest grid its successors still need, as a strided convolution with
        dilation d/g. Zero padding lands on the same (out-of-image) positions as in the dense network.
        """
        need = [stride]  # grid spacing each layer's *output* is needed on
        for dilation in reversed(self.dilations[1:]):
            need.insert(0, math.gcd(need[0], dilation))
        x, spacing = image, 1  # spacing of x's grid in input pixels
        for conv, norm, dilation, out_spacing in zip(self.convs, self.norms, self.dilations, need, strict=True):
            x = self.act(norm(_on_grid(conv, out_spacing // spacing, dilation // spacing)(x)))
            spacing = out_spacing
        if spacing != stride:  # the last layers' grid is finer than asked: subsample it
            x = x[..., :: stride // spacing, :: stride // spacing]
        return self.fc(x)


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
        self.cosine = CosineScale()

    def _tower(self, branch: str) -> _Tower:
        if branch not in ("lr", "ref"):
            raise ValueError("branch is 'lr' (upsampled LR target) or 'ref' (HR reference)")
        return self.lr_tower if branch == "lr" else self.ref_tower

    def _finish(self, features: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return features
        return self.cosine(features, self.log_temperature.exp().sqrt())  # sqrt(temperature) on each side

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return self.input_norm(image) if self.input_norm is not None else image

    def forward(self, image: torch.Tensor, branch: str = "lr") -> torch.Tensor:
        """(N, 3, H, W) -> (N, out_channels, H, W) dense features."""
        return self._finish(self._tower(branch)(self._prepare(image)))

    def features_on_grid(self, image: torch.Tensor, stride: int, branch: str = "lr") -> torch.Tensor:
        """(N, 3, H, W) -> (N, out_channels, ceil(H/stride), ceil(W/stride)) at pixels (stride*m, stride*n)."""
        return self._finish(self._tower(branch).forward_on_grid(self._prepare(image), stride))
