"""The capture's own degradation, estimated from the capture: the LR camera's lens blur, gain and noise level.

A light field's reference view and a hybrid video's keyframes are seen by both cameras: the HR image and the LR
image of the same view or instant, with no parallax between them. The LR camera's model
(``protocol.Degradation``: a Gaussian PSF of sigma ``psf`` LR pixels before the protocol's decimation, a gain per
channel, additive noise) is fitted to those pairs: for each candidate ``psf`` the HR image is blurred and decimated,
the gain solved in closed form (least squares per channel), and the ``psf`` with the smallest residual near strong
edges (``edge_mask``) kept (a coarse grid, then a golden-section refinement). The residual's robust standard
deviation over all pixels is the noise level; compression artefacts count into it. The protocol's own LR views give
``psf`` 0 and noise below one grey level.

A codec's error is no noise: JPEG's is fixed by the image and its block grid. Where the LR views were written as JPEG,
the camera's prediction passed through JPEG at the right quality explains them far better than without
(``fit_jpeg``); the quality is recorded (``jpeg``), and the light-field disparity sweep then predicts each LR view
through the same codec (``lfrefsr.lightfield``). The lens blur is then the one fitted with the codec: JPEG's own
smoothing read as a blur to the codec-free fit, and every step that models the codec would have counted it twice.
``noise`` stays the codec-free residual's, as the methods were tuned with.

Where no view has both images (a hybrid light field whose LR camera skips the reference position) nothing is
estimated; a user can give the values by hand.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr import protocol

PSF_MAX = 2.0  # LR pixels: sigma 16 HR pixels at x8, far beyond any lens a hybrid rig would pair
GRID = 21  # coarse candidates over [0, PSF_MAX] before the refinement
MAX_PAIRS = 4  # HR/LR pairs used (the first ones in store order): the estimate is per camera, not per view
MAX_SIDE = 768  # HR pixels: a centre crop of larger images is plenty for one blur width and bounds the cost
# JPEG fit: qualities tried, the lens blurs tried with each (LR px), and how much of the codec-free residual (rms) the
# best must leave at most to count as a JPEG camera. Measured residual rms ratios: JPEG 85 with noise 3 on
# hci-backgammon 0.29, Sintel alley_1 0.62, seq-0016-0025 0.67 (the true quality found on each); H.264 CRF 28 1.00,
# the protocol's own and lens-blurred views: no quality fits better than none.
JPEG_QUALITIES = tuple(range(50, 101, 5))
JPEG_PSFS = tuple(round(0.1 * k, 1) for k in range(11))
JPEG_RATIO = 0.8
JPEG_PSF_STEP = 0.02  # LR px: the lens blur's final grid, around the best of JPEG_PSFS at the quality found


@dataclass(frozen=True)
class CaptureEstimate:
    """``psf``: Gaussian sigma in LR pixels (``psf * scale`` HR pixels); ``gain`` per channel; ``noise``: robust
    residual sigma in 1/255; ``pairs``: how many HR/LR pairs it was fitted on; ``chroma``: the residual's colour
    difference sigma over its luma sigma (about 1 for sensor noise, well above where a codec subsampled the colour:
    3.4 for JPEG 85 on hci-backgammon's colourful texture; stores written before it was measured read 1); ``jpeg``: the
    quality of the JPEG the LR views were written as (``fit_jpeg``), None for no JPEG (and in older stores)."""

    psf: float
    gain: tuple[float, ...]
    noise: float
    pairs: int
    chroma: float = 1.0
    jpeg: int | None = None

    def as_json(self) -> dict:
        return {key: (list(value) if isinstance(value, tuple) else value) for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> CaptureEstimate:
        return cls(psf=float(data["psf"]), gain=tuple(data["gain"]), noise=float(data["noise"]),
                   pairs=int(data["pairs"]), chroma=float(data.get("chroma", 1.0)),
                   jpeg=None if data.get("jpeg") is None else int(data["jpeg"]))

    def line(self, scale: int) -> str:
        gains = ", ".join(f"{g:.3f}" for g in self.gain)
        return (f"psf gauss:{self.psf:.2f} (sigma {self.psf * scale:.1f} HR px), gain {gains}, "
                f"noise {self.noise:.1f}/255" + (f", colour residual {self.chroma:.1f}x luma (subsampled colour)"
                                                  if subsampled(self.chroma) else "")
                + (f", JPEG quality {self.jpeg}" if self.jpeg is not None else "")
                + f" ({self.pairs} HR/LR pair{'s' if self.pairs != 1 else ''})")


NOISY = 1.0  # 1/255: above the residual of 8-bit quantisation alone (the protocol's own LR views estimate 0.3-0.4)
SUBSAMPLED = 1.5  # chroma over luma residual: sensor noise gives 0.9-1.1 on the dev sets, 4:2:0 codecs up to 4.5
EDGE_SHARE = 0.2  # the share of LR pixels, those nearest strong edges, on which the blur is fitted


def noisy(noise: float) -> bool:
    """Whether an LR camera's noise (sigma in 1/255, ``CaptureEstimate.noise``) is more than quantisation's: the
    methods then judge residuals over neighbourhoods rather than single pixels."""
    return noise > NOISY


def subsampled(chroma: float) -> bool:
    """Whether the LR views' colour is coarser than their luma (``CaptureEstimate.chroma``): a codec's 4:2:0."""
    return chroma > SUBSAMPLED


def robust_sigma(values: torch.Tensor) -> float:
    """The median absolute deviation as a Gaussian sigma, in 1/255 for values in [0, 1]."""
    return 1.4826 * float((values - values.median()).abs().median()) * 255


def edge_mask(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 1, h-4, w-4) bool: the LR pixels within one pixel of the strongest gradients (top ``EDGE_SHARE``) of the
    protocol's LR image of ``hr`` (N, C, H, W), without the 2-pixel border ``_fit`` leaves out.

    Why: a codec removes the weak high-frequency detail (small coefficients fall to zero) but keeps strong edges,
    while a lens blurs both; fitted on every pixel, JPEG 85 read as a PSF of 0.56 LR px on hci-backgammon and 0.12 on
    Sintel alley_1, fitted near strong edges 0.27 and 0.07, while a true PSF of 0.6 stays 0.600 either way."""
    luma = protocol.downsample(hr, scale).mean(1, keepdim=True)  # (N, 1, h, w)
    dx = F.pad(luma[..., :, 1:] - luma[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(luma[..., 1:, :] - luma[..., :-1, :], (0, 0, 0, 1))
    strength = F.max_pool2d((dx * dx + dy * dy).sqrt(), 3, stride=1, padding=1)[..., 2:-2, 2:-2]
    sample = strength.flatten()[:: max(1, strength.numel() // 100_000)]  # torch.quantile's input is bounded
    return strength >= torch.quantile(sample, 1 - EDGE_SHARE)


def _fit(hr: torch.Tensor, lr: torch.Tensor, scale: int, psf: float,
         edges: torch.Tensor | None = None) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(mean squared residual, over the ``edges`` pixels if given, gain (C,), residual (N, C, h-4, w-4)) for one
    candidate ``psf``; a border of 2 LR pixels (the blur's replicate padding) is left out."""
    predicted = protocol.camera_downsample(hr, scale, psf if psf > 1e-3 else 0.0)[..., 2:-2, 2:-2]
    target = lr[..., 2:-2, 2:-2]
    gain = (predicted * target).sum((0, 2, 3)) / (predicted * predicted).sum((0, 2, 3)).clamp_min(1e-12)  # (C,)
    residual = target - predicted * gain.view(1, -1, 1, 1)
    squared = residual.pow(2).mean(1, keepdim=True)  # (N, 1, h-4, w-4)
    error = squared[edges].mean() if edges is not None else squared.mean()
    return float(error), gain, residual


def estimate(hrs: list[torch.Tensor], lrs: list[torch.Tensor], scale: int) -> CaptureEstimate:
    """The LR camera's ``psf``, gain and noise from HR/LR pairs of the same view: float (C, H, W) and (C, h, w)
    images in [0, 1] with ``H = h * scale`` (after the protocol's crop). The ``psf`` is fitted near strong edges
    (``edge_mask``), the gain and noise on every pixel; where a JPEG quality is found, the ``psf`` is the one fitted
    with it (``fit_jpeg``)."""
    hr = torch.stack([protocol.crop_to_multiple(image, scale) for image in hrs]).float()  # (N, C, H, W)
    lr = torch.stack(lrs).float()  # (N, C, h, w)
    if lr.shape[-2:] != (hr.shape[-2] // scale, hr.shape[-1] // scale) or min(lr.shape[-2:]) < 8:
        raise ValueError(f"LR {tuple(lr.shape[-2:])} is not the x{scale} image of HR {tuple(hr.shape[-2:])}")
    with torch.inference_mode():
        edges = edge_mask(hr, scale)

        def error(psf: float) -> float:
            return _fit(hr, lr, scale, psf, edges)[0]

        candidates = np.linspace(0.0, PSF_MAX, GRID)
        errors = [error(float(p)) for p in candidates]
        best = int(np.argmin(errors))
        low, high = candidates[max(best - 1, 0)], candidates[min(best + 1, GRID - 1)]
        ratio = (math.sqrt(5) - 1) / 2  # golden section on [low, high], where the error is unimodal
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        fa, fb = error(a), error(b)
        for _ in range(14):  # the bracket shrinks to 0.2 * 0.618^14 < 2e-4 LR px
            if fa < fb:
                high, b, fb = b, a, fa
                a = high - ratio * (high - low)
                fa = error(a)
            else:
                low, a, fa = a, b, fb
                b = low + ratio * (high - low)
                fb = error(b)
        psf = (low + high) / 2
        if errors[0] <= min(fa, fb):  # no blur beyond the protocol's fits best
            psf = 0.0
        _, gain, residual = _fit(hr, lr, scale, psf)
        noise = robust_sigma(residual)
        chroma = 1.0
        if residual.shape[1] == 3:  # BT.601 luma and colour differences of the residual
            luma = protocol.luma(residual)[:, 0]  # (N, h, w)
            colour = (robust_sigma(0.564 * (residual[:, 2] - luma)) + robust_sigma(0.713 * (residual[:, 0] - luma))) / 2
            chroma = colour / max(robust_sigma(luma), 0.05)
        codec = fit_jpeg(hr, lr, scale, float(psf), gain)
        quality = None
        if codec is not None:
            quality, psf = codec
    return CaptureEstimate(psf=round(float(psf), 4), gain=tuple(round(float(g), 4) for g in gain),
                           noise=round(noise, 3), pairs=len(hrs), chroma=round(chroma, 3), jpeg=quality)


def fit_jpeg(hr: torch.Tensor, lr: torch.Tensor, scale: int, psf: float,
             gain: torch.Tensor) -> tuple[int, float] | None:
    """(The JPEG quality the LR views (N, 3, h, w) were written at, the lens blur in LR px fitted with it), from the HR
    views (N, 3, H, W) of the same views and the codec-free fit (``psf``, ``gain`` (C,)); None where no quality
    explains them clearly better than no codec.

    Every quality in ``JPEG_QUALITIES`` is tried with every lens blur in ``JPEG_PSFS`` (and ``psf``), then the blur is
    refined every ``JPEG_PSF_STEP`` around the best at the quality found. Why the blur too: JPEG's own smoothing reads
    as a blur to the codec-free fit. At the centre crops ``estimate_store`` fits, codec-free -> with the codec:
    JPEG 85 alone 0.273 -> 0.08 LR px on hci-backgammon, 0.061 -> 0.00 on Sintel alley_1; a lens of 0.6 with JPEG 85
    0.675 -> 0.60 on hci-backgammon, 0.600 -> 0.60 on alley_1. The LR views must start on the codec's 16-pixel grid
    (``estimate_store`` crops there)."""
    if lr.shape[1] != 3:
        return None
    gain = gain.view(1, -1, 1, 1)

    def seen(blur: float) -> torch.Tensor:  # (N, 3, h, w): the camera's LR image before any codec
        return protocol.camera_downsample(hr, scale, blur) * gain

    def rms(predicted: torch.Tensor) -> float:
        return float((predicted - lr)[..., 2:-2, 2:-2].pow(2).mean().sqrt())

    without = rms(seen(psf))
    fits = []  # (rms, quality, blur)
    for blur in sorted({*JPEG_PSFS, round(psf, 3)}):
        predicted = seen(blur).clamp(0, 1)
        fits += [(rms(protocol.through_jpeg(predicted, quality)), quality, blur) for quality in JPEG_QUALITIES]
    best, quality, blur = min(fits)
    if best >= JPEG_RATIO * without:
        return None
    steps = round(0.1 / JPEG_PSF_STEP)
    fine = sorted({max(0.0, round(blur + k * JPEG_PSF_STEP, 4)) for k in range(-steps, steps + 1)})
    return quality, min((rms(protocol.through_jpeg(seen(b).clamp(0, 1), quality)), b) for b in fine)[1]


def estimate_store(store) -> CaptureEstimate | None:
    """Fit the views that have both an HR and an LR image (a light field's reference, a video's keyframes), up to
    ``MAX_PAIRS`` of them; None where no view has both."""
    if store.ref is not None and len(store.view_shape) == 2:
        indices = [tuple(store.ref)] if store.hr_known[tuple(store.ref)] else []
    else:  # a video's keyframes, or each time step's reference of a light-field video
        indices = [index for index in store.views() if store.hr_known[index]
                   and (store.ref is None or tuple(index[-2:]) == tuple(store.ref))]
    indices = indices[:MAX_PAIRS]
    if not indices:
        return None
    hrs = [protocol.to_float(store.read("hr", index), store.dtype) for index in indices]
    lrs = [protocol.to_float(store.read("lr", index), store.dtype) for index in indices]
    s = store.scale
    h, w = store.shape_lr
    ch, cw = min(h, MAX_SIDE // s), min(w, MAX_SIDE // s)  # centre crop in LR pixels
    y, x = (h - ch) // 2 // 16 * 16, (w - cw) // 2 // 16 * 16  # on a codec's 16-pixel block grid (fit_jpeg)
    hrs = [hr[:, y * s : (y + ch) * s, x * s : (x + cw) * s] for hr in hrs]
    lrs = [lr[:, y : y + ch, x : x + cw] for lr in lrs]
    try:
        return estimate(hrs, lrs, store.scale)
    except ValueError:  # LR views too small to fit (a few pixels a side)
        return None


def record(store) -> CaptureEstimate | None:
    """Estimate and record it in the store's attributes (``capture``), or record that none could be made."""
    result = estimate_store(store)
    store.backend.update_attrs({"capture": None if result is None else result.as_json()})
    return result
