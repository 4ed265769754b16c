"""``sisr``: SRResNet + NN single-image super-resolution with the shipped weights (no reference used).

``sliding=True`` is the paper's "SRResNet + NN + sliding": overlapping ``patch`` x ``patch`` LR windows every
``stride`` pixels, predictions averaged with weights that favour each window's centre (the same statistics at test as
in training, at many times the cost).
``ensemble=True`` averages the network's results on the 8 flips and quarter turns of the LR view (the geometric
self-ensemble of EDSR+, Lim et al. 2017). ``back_project`` corrects the result until the LR camera would see the LR
view in it (``flowwarp.back_project``; not in the paper). A scale other than the network's runs the network and
resizes its output (antialiased bicubic).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfrefsr.capability import autocast, effective_precision
from lfrefsr.methods.base import Method, ViewHint, register
from lfrefsr.methods.flowwarp import back_project, back_project_steps
from lfrefsr.methods.options import CameraOptions, LearnedOptions, option

# Back-projection steps onto the LR view by LR camera. What the network adds that the LR view contradicts is its own
# guess, and the protocol's camera tells exactly what the view holds: shipped sisr, RGB PSNR without -> with 2 / 10
# steps, hci-backgammon (every third view) 24.76 -> 25.06 / 25.07, Sintel alley_1 clean (3 frames) 25.26 -> 25.33 /
# 25.33, seq-0016-0025 (9 frames) 24.51 -> 24.57 / 24.57. A lens blur the network never saw leaves more to correct
# (--degrade psf=gauss:0.6, through the estimated PSF): hci-backgammon 23.51 -> 24.38 / 24.99, alley_1 22.75 -> 24.33
# with 10. A noisy camera gets none: soft-thresholded by twice its noise, 2 steps changed nothing there
# (noise=3,jpeg=85: 23.01 and 24.19 either way).
BACK_PROJECT = {"protocol": 2, "lens": 10}


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


def self_ensemble(run, lr: torch.Tensor) -> torch.Tensor:
    """``run`` ((N, 3, h, w) -> (N, 3, h*s, w*s)) on the 8 flips and quarter turns of ``lr``, each result turned
    back; their mean (N, 3, h*s, w*s). A network that learned no orientation of its own is then equivariant to all 8.
    Shipped sisr, RGB PSNR, alone -> ensembled: hci-backgammon (every third view) 24.76 -> 24.85, Sintel alley_1
    clean 25.26 -> 25.36, seq-0016-0025 24.51 -> 24.62."""
    total = None
    for turns in range(4):
        for flip in (False, True):
            seen = torch.rot90(lr, turns, dims=(-2, -1))  # (N, 3, h, w), or (N, 3, w, h) for odd turns
            sr = run(seen.flip(-1) if flip else seen).float()
            sr = torch.rot90(sr.flip(-1) if flip else sr, -turns, dims=(-2, -1))  # back to (N, 3, h*s, w*s)
            total = sr if total is None else total + sr
    return total / 8


def resize_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", antialias=True, align_corners=False)


@dataclass(frozen=True)
class SISROptions(LearnedOptions, CameraOptions):
    """sisr's options. The LR camera (``psf``, ``noise``) decides the back-projection: its image model, and none for
    a noisy camera."""

    weights: str | None = option(None, "SISR weights file [default: the shipped sisr]", flag="--weights")
    sliding: bool = option(False, "The paper's sliding variant: overlapping LR windows, predictions averaged")
    patch: int = option(24, "Sliding: LR window side")
    stride: int = option(2, "Sliding: LR pixels between windows")
    ensemble: bool = option(False, "Self-ensemble: the network on the 8 flips and quarter turns of the LR view, "
                                   "results averaged (8x the time)")
    back_project: int | None = option(None, "Back-projection steps onto the LR view [default: BACK_PROJECT's rule: "
                                            "2 for the protocol's LR camera, 10 for a lens blur (psf), none for a "
                                            "noisy camera; 0: the paper's network alone]")


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
        self.back_project_steps = back_project_steps(chosen.back_project, BACK_PROJECT, chosen.psf, chosen.noise)

    def _network(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N, 3, h*s, w*s), s the network's scale: whole, or in sliding windows."""
        chosen = self.options
        return run_sliding(self.model, lr, chosen.patch, chosen.stride) if chosen.sliding else self.model(lr)

    def prepare(self, ref):
        return None

    @torch.inference_mode()
    def super_resolve(self, lr: torch.Tensor, context=None, hint: ViewHint | None = None) -> torch.Tensor:
        lr = lr.to(self.device)[None]  # (1, 3, h, w)
        with autocast(self.device, self.precision):
            sr = self_ensemble(self._network, lr) if self.options.ensemble else self._network(lr)
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        sr = resize_to(sr.float(), size)
        if self.back_project_steps:
            sr = back_project(sr, lr, self.scale, self.back_project_steps, self.options.psf, self.options.noise)
        return sr[0].clamp(0.0, 1.0)
