"""``sisr``: SRResNet + NN single-image super-resolution with the shipped weights (no reference used).

``sliding=True`` is the paper's "SRResNet + NN + sliding": overlapping ``patch`` x ``patch`` LR windows every
``stride`` pixels, predictions averaged with weights that favour each window's centre (the same statistics at test as
in training, at many times the cost).
A scale other than the network's runs the network and resizes its output (antialiased bicubic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfrefsr.capability import effective_precision
from lfrefsr.methods.base import Method, ViewHint, register
from lfrefsr.methods.options import LearnedOptions, option


def window_weight(side: int) -> torch.Tensor:
    """(side, side) tent weights, 1 at the window's centre falling towards its edges (never to 0)."""
    tent = 1 - (torch.arange(side, dtype=torch.float32) - (side - 1) / 2).abs() / (side / 2)  # (side,)
    return tent[:, None] * tent[None]


def run_sliding(model, lr: torch.Tensor, patch: int, stride: int, batch: int = 32) -> torch.Tensor:
    """(1, 3, h, w) -> (1, 3, h*s, w*s) by averaging the predictions of overlapping LR windows, each weighted by a
    tent over the window (``window_weight``).

    Why weighted: a prediction near a window's edge saw the zero padding, the train/test discrepancy the paper's
    sliding is for; averaged uniformly, those predictions cost the gain. Sintel seq-0016-0025 frames 1/4/7 and
    alley_1 frames 1-3, RGB PSNR: the whole image 24.533 / 25.262, uniform windows (24 px every 2) 24.525 / 25.269,
    tent-weighted 24.553 / 25.285."""
    from lfrefsr.synthesis import patch_origins

    _, _, h, w = lr.shape
    s = model.scale
    rows, cols = patch_origins(h, patch, stride), patch_origins(w, patch, stride)
    padded = F.pad(lr, (0, cols[-1] + patch - w, 0, rows[-1] + patch - h), mode="replicate")
    out = torch.zeros(1, 3, padded.shape[2] * s, padded.shape[3] * s)
    total = torch.zeros(1, 1, *out.shape[2:])
    weight = window_weight(patch * s)  # (p*s, p*s)
    origins = [(i, j) for i in rows for j in cols]
    for start in range(0, len(origins), batch):
        chunk = origins[start : start + batch]
        windows = torch.cat([padded[:, :, i : i + patch, j : j + patch] for i, j in chunk])  # (B, 3, p, p)
        predictions = model(windows).float()  # (B, 3, p*s, p*s)
        for (i, j), prediction in zip(chunk, predictions, strict=True):
            out[0, :, i * s : (i + patch) * s, j * s : (j + patch) * s] += prediction * weight
            total[0, :, i * s : (i + patch) * s, j * s : (j + patch) * s] += weight
    return (out / total)[:, :, : h * s, : w * s]


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False)


@dataclass(frozen=True)
class SISROptions(LearnedOptions):
    """sisr's options."""

    weights: str | None = option(None, "SISR weights file [default: the shipped sisr]", flag="--weights")
    sliding: bool = option(False, "The paper's sliding variant: overlapping LR windows, predictions averaged")
    patch: int = option(24, "Sliding: LR window side")
    stride: int = option(2, "Sliding: LR pixels between windows")


@register
class SISR(Method):
    name = "sisr"
    Options = SISROptions
    uses_reference = False

    @classmethod
    def networks(cls, options: SISROptions) -> dict[str, str]:
        return {"sisr": str(options.weights or "sisr")}

    def __init__(self, scale: int = 8, device="cpu", **options):
        from lfrefsr.weights import load_network

        super().__init__(scale, device, **options)
        chosen = self.options
        self.precision = effective_precision(chosen.precision, self.device)
        self.model, _ = load_network("sisr", chosen.weights, device=str(self.device))
        self.sliding, self.patch, self.stride = chosen.sliding, chosen.patch, chosen.stride

    def prepare(self, ref):
        return None

    @torch.inference_mode()
    def super_resolve(self, lr: torch.Tensor, context=None, hint: ViewHint | None = None) -> torch.Tensor:
        lr = lr.to(self.device)[None]  # (1, 3, h, w)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            if self.sliding:
                sr = run_sliding(self.model, lr, self.patch, self.stride)
            else:
                sr = self.model(lr)
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        return resize_to(sr.float(), size)[0].clamp(0.0, 1.0)
