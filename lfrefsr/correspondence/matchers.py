"""Cross-scale matchers behind one interface: CC-Net and the classical baselines of the paper's Table 2.

A matcher takes an LR target (3, h, w) and an HR reference (3, H, W), floats in [0, 1], and returns one match per
LR pixel: centres at HR pixels (scale*m, scale*n) (``Matches``). ``prepare(ref)`` runs once per reference.

    ccnet        CC-Net features, inner products (the shipped weights or ``weights=``)
    zncc         ZNCC of 65-px patches: upsampled LR target against the raw HR reference
    zncc_blurry  the same against the reference degraded by the protocol (the paper's ZNCC_blurry)
    gradient     first- and second-order gradient features (Chang et al. 2004) of the blurred images, L2 distance
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.capability import effective_precision
from lfrefsr.correspondence import inputs
from lfrefsr.correspondence.engine import Matches, match
from lfrefsr.correspondence.zncc import zncc_match
from lfrefsr.errors import LfrefsrError
from lfrefsr.metrics import rgb_to_y
from lfrefsr.registry import Registry

MATCHERS: Registry[type[Matcher]] = Registry("matcher")


def register(cls):
    return MATCHERS.register(cls)


def available() -> list[str]:
    return MATCHERS.names()


def get_matcher(name: str, **kwargs) -> Matcher:
    return MATCHERS.get(name)(**kwargs)


class Matcher:
    name: ClassVar[str] = ""

    def __init__(self, scale: int = 8, search_range: int = 100, device: str = "cpu", subpixel: bool = False):
        self.scale, self.search_range, self.device, self.subpixel = int(scale), int(search_range), device, subpixel

    def prepare(self, ref: torch.Tensor):
        return ref

    def match(self, lr: torch.Tensor, context, direction: tuple[float, float] | None = None) -> Matches:
        raise NotImplementedError


@register
class CCNetMatcher(Matcher):
    """CC-Net: dense reference features once per reference, target features on the centre grid only.

    ``aggregate``: scores averaged over aggregate x aggregate neighbouring centres per displacement before the best is
    taken (``engine.match``; 1 = the paper's per-centre argmax). 7 was chosen on held-out synthetic pairs, where
    accuracy within 1 px rose with the size up to 7 on plain scenes (62.2 % at 1, 68.3 % at 7 and at 9).
    """

    name = "ccnet"
    DEFAULT_AGGREGATE: ClassVar[int] = 7

    def __init__(self, *, weights: str | Path | None = None, precision: str = "fp32", block: int | None = None,
                 strip: int | None = None, aggregate: int = DEFAULT_AGGREGATE, candidates: int = 1, **kwargs):
        super().__init__(**kwargs)
        if aggregate < 1 or aggregate % 2 == 0:
            raise LfrefsrError(f"aggregate must be an odd number >= 1, got {aggregate}")
        self.aggregate, self.candidates = int(aggregate), int(candidates)
        from lfrefsr.weights import load_ccnet

        self.model, self.reference_input = load_ccnet(weights, device=self.device)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.precision = effective_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        # centre columns per search product (``search.best_rows``; 4x as many reference rows). The CPU is fastest
        # at 8 (16 wastes more window columns, 4 makes smaller products); a GPU is bound by kernel launches at small
        # products, hence 32 there (the timings: benchmarks/README.md, "Kernels and engine")
        self.block = block or (32 if str(self.device).startswith("cuda") else 8)
        self.strip = strip

    def _autocast(self):
        enabled = self.dtype == torch.bfloat16
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=enabled)

    @torch.inference_mode()
    def prepare(self, ref: torch.Tensor) -> torch.Tensor:
        """Dense reference features (C, H, W), stored channels-last (the engine's layout), computed in strips of
        ``strip`` rows with a halo of half the receptive field (80 rows each side), so a large reference never holds
        a whole-image activation of the network; the result equals the whole-image computation. None: strips of
        about 256 x 1024 pixels, 256 * 1024 // width rows (64 to 1024), which bounds the peak on a large reference
        (benchmarks/README.md, "Kernels and engine") while a 512-wide reference is one 512-row strip, with no halo
        rows computed twice (two 256-row strips compute 672 rows)."""
        image = inputs.ref_input(ref[None].to(self.device), self.scale, self.reference_input)
        height, width = image.shape[-2:]
        halo = self.model.halo
        strip = self.strip or max(64, min(1024, 256 * 1024 // width))
        if strip >= height:  # one strip: the network's output is the result, no copy into ``out``
            with self._autocast():
                feats = self.model(image.contiguous(memory_format=torch.channels_last), "ref")
            return feats.to(self.dtype).contiguous(memory_format=torch.channels_last)[0]  # (C, H, W), channels-last
        out = torch.empty(1, self.model.out_channels, height, width, dtype=self.dtype, device=image.device,
                          memory_format=torch.channels_last)  # allocated in place: no second copy at peak
        for top in range(0, height, strip):
            bottom = min(height, top + strip)
            y0, y1 = max(0, top - halo), min(height, bottom + halo)
            with self._autocast():
                feats = self.model(image[:, :, y0:y1].contiguous(memory_format=torch.channels_last), "ref")
            out[:, :, top:bottom] = feats[:, :, top - y0 : top - y0 + bottom - top].to(self.dtype)
        return out[0]  # (C, H, W), channels-last in memory

    @torch.inference_mode()
    def target_features(self, lr: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            feats = self.model.features_on_grid(inputs.lr_input(lr[None].to(self.device), self.scale), self.scale)
        return feats[0].to(self.dtype)  # (C, h, w)

    def match(self, lr, context, direction=None) -> Matches:
        return match(self.target_features(lr), context, stride=self.scale, search_range=self.search_range,
                     block=self.block, subpixel=self.subpixel, direction=direction, aggregate=self.aggregate,
                     candidates=self.candidates)


@register
class ZNCC(Matcher):
    name = "zncc"
    blurry: ClassVar[bool] = False

    def prepare(self, ref):
        return protocol.blur(ref, self.scale) if self.blurry else ref

    def match(self, lr, context, direction=None) -> Matches:
        if direction is not None:
            raise LfrefsrError("ZNCC has no epipolar mode")
        return zncc_match(protocol.upsample(lr, self.scale), context, stride=self.scale,
                          search_range=self.search_range)


@register
class ZNCCBlurry(ZNCC):
    name = "zncc_blurry"
    blurry = True


@register
class Gradient(Matcher):
    """Chang et al. (2004) features as the PatchMatch RefSR baseline uses them: derivatives [-1, 0, 1] and
    [1, 0, -2, 0, 1] of the luminance, horizontal and vertical, at LR scale (taps ``scale`` HR pixels apart) on the
    blurred images, sampled on a 5 x 5 patch of LR pixels: 100 numbers per pixel, compared by L2 distance."""

    name = "gradient"
    patch = 5

    def _features(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) blurred image -> (4 * patch^2, H, W)."""
        s = self.scale
        luma = rgb_to_y(image).float()[None, None]  # (1, 1, H, W)
        first = torch.tensor([-1.0, 0.0, 1.0], device=luma.device)
        second = torch.tensor([1.0, 0.0, -2.0, 0.0, 1.0], device=luma.device)
        maps = []
        for kernel in (first, second):
            k = kernel.numel()
            pad = (k // 2) * s
            horizontal = kernel.view(1, 1, 1, k)
            vertical = kernel.view(1, 1, k, 1)
            maps.append(F.conv2d(F.pad(luma, (pad, pad, 0, 0), mode="replicate"), horizontal, dilation=(1, s)))
            maps.append(F.conv2d(F.pad(luma, (0, 0, pad, pad), mode="replicate"), vertical, dilation=(s, 1)))
        grads = torch.cat(maps, 1)  # (1, 4, H, W)
        half = (self.patch // 2) * s
        padded = F.pad(grads, (half, half, half, half), mode="replicate")
        patches = F.unfold(padded, self.patch, dilation=s)  # (1, 4*patch^2, H*W)
        return patches.view(-1, *image.shape[-2:])  # (D, H, W)

    def prepare(self, ref):
        feats = self._features(protocol.blur(ref, self.scale))
        return feats, -(feats * feats).sum(0)  # argmin |f - g|^2 = argmax 2<f, g> - |g|^2

    def match(self, lr, context, direction=None) -> Matches:
        feats_ref, bias = context
        target = self._features(protocol.upsample(lr, self.scale))[:, :: self.scale, :: self.scale]  # (D, h, w)
        return match(2 * target, feats_ref, stride=self.scale, search_range=self.search_range, ref_bias=bias,
                     direction=direction, subpixel=self.subpixel)
