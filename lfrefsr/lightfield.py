"""Light-field geometry shared by all views: one disparity map of the reference, estimated from every LR view.

In a light field every view sees the same scene points, shifted by the point's disparity times the view's grid offset
(SPEC and HCI convention: ``I_ref(x, y) = I_uv(x - d (v - v0), y - d (u - u0))``). A single disparity map of the
reference therefore explains all 63 LR views of an 8x8 grid, and estimating it from all of them at once is far more
robust than 63 independent optical flows: a plane sweep over disparities compares the reference, degraded as the LR
views are, with every LR view shifted along its baseline, and keeps the best ``keep`` share of the views at each pixel
so that views where the point is occluded do not vote. Each target view then gets its own disparity map by a
fixed-point iteration (``view_disparity``), and from it the flow to the reference (``view_flow``). Where the LR views
are noisy or JPEG, the swept map is then fitted to all views at once, continuously, through the camera and the codec
(``_refine_disparity``): the sweep judges each pixel alone from a box of costs, the fit weighs every view's pixels
together under a smoothness prior.

On hci-backgammon this map is accurate to about 0.08 px per grid step at the median, but it blurs depth edges and
misses structures thinner than an LR pixel (the LR views cannot show them). So refsr turns it, and its local maxima
and minima near edges (``disparity_hypotheses``), into candidate flows beside the per-view DIS flow and keeps, per LR
pixel, whichever warp agrees best with the LR view (``lfrefsr.methods.flowwarp.select_flow``). The sweep is not tiled:
at 4096x4096 views its working set (views at twice the LR resolution, their shifted copies, one cost plane per
candidate) is 2-3 GB by count, not measured. At 2048x2048 views (63 of 256x256, JPEG, 2 cores) the sweep through the
codec took 66 s at a peak RSS of 1.4 GB, and with the refinement 100 s and 2.1 GB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.filters import charbonnier, total_variation
from lfrefsr.warp import pixel_grid, sample

WORK_PER_LR_PIXEL = 2  # the sweep runs at twice the LR resolution: the views carry nothing finer
OUTSIDE_COST = 1.0  # a view whose shifted position leaves the image costs the most, so it is not kept
MIN_VIEWS = 3  # fewer views do not outvote occlusions; refsr then keeps the per-view flow alone
# disparity hypotheses beside the estimate: its local max and min over these half-widths (HR px). Chosen on three
# synthetic 8x8 light fields and 11 hci-backgammon views; gain of refsr over flowwarp there (dB, selection window 3):
# no hypotheses +0.32 / +0.33, (12,) +2.05 / +0.63, (4, 12) +2.26 / +0.65
EDGE_SPREADS = (4, 12)
# The sweep for a noisy LR camera (capture.noisy): every view votes and the cost is aggregated over a wider box; for
# views whose colour a codec subsampled (capture.subsampled), the cost is on luma. hci-backgammon, reference warped by
# the disparity alone, 10 views (clean views: 27.88 dB):
#   noise=3,jpeg=85 (noise 6.5, chroma 2.7): RGB keep 0.75 / window 5 (the clean setting) 23.33, RGB 1.0 / 21 25.65,
#     luma 0.75 / 5 25.89, luma 1.0 / 9 26.44, luma 1.0 / 13 26.49, luma 1.0 / 21 26.14
#   jpeg=85 (noise 6.3, chroma 3.4): RGB 0.75 / 5 23.19, RGB 1.0 / 21 25.43, luma 0.75 / 5 25.24, luma 1.0 / 9 25.93
#   noise=3 (noise 3.0, chroma 1.0): RGB 0.75 / 5 27.77, RGB 1.0 / 5 27.78, RGB 1.0 / 9 27.48 (the rule),
#     RGB 1.0 / 21 26.65, luma 1.0 / 9 27.03
NOISY_SWEEP = {"keep": 1.0, "window": 9}
# Views written as JPEG (capture.fit_jpeg found the quality): each view predicted through the codec on its own grid,
# compared in RGB with the clean camera's keep and window, whatever the noise estimate (which counts the codec's error
# in). hci-backgammon, disparity alone / hypotheses selected, 10 views:
#   noise=3,jpeg=85: the plain rule 26.44 / 26.34; through the codec RGB 0.75 / 5 26.93 / 26.97, RGB 1.0 / 9
#     26.84 / 26.90, RGB 1.0 / 5 26.88 / 26.95, RGB 0.75 / 7 26.91 / 26.95, luma 1.0 / 9 26.10 / 26.02
#   jpeg=85: the plain rule 25.93 / 25.85; RGB 0.75 / 5 27.08 / 27.24, RGB 1.0 / 9 26.96 / 27.11, RGB 1.0 / 5
#     27.13 / 27.26, luma 1.0 / 9 26.90 / 26.97
# 2.9 s per sweep against 1.9-2.1 (63 views of 64 x 64, 2 cores).

# The swept disparity refined through every view's camera (``_refine_disparity``) where the LR views are noisy or
# JPEG: Adam's steps, the weight of the map's total variation, Adam's step (px per grid step). refsr, RGB PSNR, swept
# -> refined 40 steps at weight 0.005 / 0.02 / 0.03 / 0.05 (60 steps at 0.05): hci-backgammon (63 views)
# noise=3,jpeg=85 26.70 -> 27.11 / 27.14 / 27.10 / 27.06 (27.01); synthetic 8x8 light fields, seeds 0 / 1 / 2, 10
# views each: 28.50 / 33.39 / 28.71 -> 0.005 27.86 / 32.66 / 28.38, 0.02 28.58 / 33.30 / 28.84, 0.03 28.64 / 33.47 /
# 28.84, 0.05 28.73 / 33.51 / 28.77 (60 steps 28.63 / 33.63 / 28.89). At 0.03, synthetic h264=28 25.37 / 29.63 / 25.18
# -> 25.60 / 30.14 / 25.56, noise=2,jpeg=70 27.49 / 32.42 / 26.60 -> 27.78 / 32.65 / 26.78, noise=3 28.13 / 33.53 /
# 29.72 -> 29.00 / 34.77 / 31.07. With no weight the map follows the noise (the warp by the hypotheses, 26.97 -> 24.51).
# hci-backgammon h264=28 23.33 -> 24.08, noise=3 27.48 -> 27.88. The warp by the hypotheses stays within 27.2-27.4
# whatever the Charbonnier epsilon (x0.25-2), the sweep's box (3-9) or share kept (0.5-1). About 1.2 s per light
# field of 63 views of 64 x 64. A clean camera's map is left as swept: hci-backgammon clean 28.88 either way,
# psf=gauss:0.6 28.36 -> 28.39. These figures are with a straight-through gradient through JPEG; with its colour's
# (protocol.jpeg_with_gradient), noise=3,jpeg=85 27.16, synthetic 28.63 / 33.45 / 28.82. With the lens blur fitted
# through the codec (capture.fit_jpeg), every view, 40 -> 60 -> 80 steps: hci-backgammon noise=3,jpeg=85 27.284 ->
# 27.288 -> 27.260, h264=28 24.105 -> 24.413 -> 24.662, noise=3 27.877 -> 27.911; synthetic seeds 0 / 1
# noise=3,jpeg=85 28.554 / 33.516 -> 28.594 / 33.605 -> 28.610 / 33.618, h264=28 25.622 / 30.299 -> 25.589 / 30.298.
# The 60 steps took 2.7-3.1 s per hci-backgammon light field (63 views of 64 x 64, 2 cores; 40 steps 1.4-3.3 s).
DISPARITY_REFINE = {"steps": 60, "smooth": 0.03, "step": 0.05}


def sweep_settings(noise: float, chroma: float = 1.0, jpeg: int | None = None) -> dict:
    """``estimate_disparity``'s options for an LR camera of ``noise`` (sigma in 1/255), ``chroma``
    (``CaptureEstimate.chroma``) and ``jpeg`` (``CaptureEstimate.jpeg``)."""
    from lfrefsr.capture import noisy, subsampled

    refined = {"refine": DISPARITY_REFINE["steps"], "noise": noise} if jpeg is not None or noisy(noise) else {}
    if jpeg is not None:
        return {"jpeg": jpeg, **refined}
    return {**(NOISY_SWEEP if noisy(noise) else {}), **({"luma": True} if subsampled(chroma) else {}), **refined}


def estimate_disparity(
    ref: torch.Tensor,
    views: list[tuple[tuple[int, int], torch.Tensor]],
    scale: int,
    *,
    max_disparity: float = 4.0,
    step: float = 0.1,
    keep: float = 0.75,
    window: int = 5,
    psf: float = 0.0,
    luma: bool = False,
    jpeg: int | None = None,
    refine: int = 0,
    noise: float = 0.0,
) -> torch.Tensor:
    """Disparity (H, W) of the reference view, in HR pixels per grid step. ``psf``: the LR camera's Gaussian PSF in LR
    pixels (``lfrefsr.capture``), so that the reference is blurred as the LR views are.

    ref (3, H, W) HR reference; views: ((du, dv) grid offset from the reference, LR view (3, H/scale, W/scale)).
    Candidates are every ``step`` in [-max_disparity, max_disparity]; ``keep`` is the share of views averaged per
    pixel (the best-matching ones); ``window`` the side, in working pixels, of the box that aggregates the cost;
    ``luma``: compare BT.601 luma only (views whose colour a codec subsampled). ``jpeg``: the quality the LR views
    were written at (``capture.fit_jpeg``); each view is then predicted from the reference, through the camera and the
    codec, on its own pixel grid (``_ViewPrediction``), and compared there. ``refine``: Adam steps fitting the swept
    disparity to every view at once (``_refine_disparity``), with the Charbonnier epsilon the camera's ``noise``.
    """
    if not views:
        raise ValueError("estimate_disparity needs at least one LR view")
    height, width = ref.shape[-2:]
    low_h, low_w = views[0][1].shape[-2:]
    size = (low_h * WORK_PER_LR_PIXEL, low_w * WORK_PER_LR_PIXEL)
    work_per_hr = size[1] / width  # working pixels per HR pixel
    lrs = torch.stack([lr.to(ref) for _, lr in views])  # (V, 3, h, w)
    offsets = torch.tensor([[dv, du] for (du, dv), _ in views], dtype=ref.dtype, device=ref.device)  # (V, 2): x, y
    predict = None
    if jpeg is not None or refine:
        # outside inference mode (refsr prepares under it) so that the refinement can fit through the prediction
        with torch.inference_mode(False):
            predict = _ViewPrediction(ref.clone(), lrs.clone(), offsets.clone(), scale, psf, jpeg, luma)
    if jpeg is None:
        blurred = protocol.blur(ref[None], scale, psf)  # (1, 3, H, W): the reference as the LR views see it
        ref_work = F.interpolate(blurred, size=size, mode="bilinear", antialias=True,
                                 align_corners=False)  # (1, 3, h2, w2)
        seen = lrs
        if luma and lrs.shape[1] == 3:
            ref_work, seen = protocol.luma(ref_work), protocol.luma(lrs)  # (1, 1, h2, w2), (V, 1, h, w)
        lrs_work = F.interpolate(seen, size=size, mode="bicubic", align_corners=False)  # (V, 3, h2, w2)
    grid = pixel_grid(*size, device=ref.device, dtype=ref.dtype)  # (2, h2, w2)
    kept = max(1, int(round(keep * len(views))))
    candidates = torch.arange(-max_disparity, max_disparity + step / 2, step, device=ref.device, dtype=ref.dtype)
    costs = torch.empty(len(candidates), *size, device=ref.device, dtype=ref.dtype)  # (D, h2, w2)
    for k, disparity in enumerate(candidates):
        # reference pixel p sees the scene point that view (du, dv) shows at p - d (dv, du)
        coords = grid[None] - (disparity * work_per_hr) * offsets[:, :, None, None]  # (V, 2, h2, w2)
        if jpeg is not None:  # each view's error on its own grid, brought to the reference's
            error = sample(F.interpolate(predict.error(disparity), size=size, mode="bilinear", align_corners=False),
                           coords)[:, 0]  # (V, h2, w2)
        else:
            error = (sample(lrs_work, coords) - ref_work).abs().mean(1)  # (V, h2, w2)
        outside = (coords[:, 0] < 0) | (coords[:, 0] > size[1] - 1) | (coords[:, 1] < 0) | (coords[:, 1] > size[0] - 1)
        error = error.masked_fill(outside, OUTSIDE_COST)
        costs[k] = error.topk(kept, dim=0, largest=False).values.mean(0)  # (h2, w2): the best views only
    costs = F.avg_pool2d(costs[None], window, stride=1, padding=window // 2, count_include_pad=False)[0]
    disparity = _subpixel_argmin(costs, candidates, step)  # (h2, w2)
    if refine:
        disparity = _refine_disparity(disparity, predict, refine, noise)
    return F.interpolate(disparity[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]


def prefiltered(image: torch.Tensor, scale: int) -> torch.Tensor:
    """The protocol's LR image of ``image`` (C, H, W) at every HR phase -> (C, H, W): pixel (y, x) is the value the
    protocol's decimation gives an LR pixel centred on HR pixel (y + (scale - 1) / 2, x + (scale - 1) / 2), so
    ``out[:, ::scale, ::scale]`` is ``protocol.downsample(image)`` and a translated image's LR view is ``out``
    sampled on a translated grid. ``image`` is cropped to a multiple of ``scale`` (``protocol.crop_to_multiple``)."""
    image = protocol.crop_to_multiple(image, scale)
    out = torch.empty_like(image)
    for row in range(scale):
        for column in range(scale):
            shifted = F.pad(image[None, :, row:, column:], (0, column, 0, row), mode="replicate")  # (1, C, H, W)
            out[:, row::scale, column::scale] = protocol.downsample(shifted, scale)[0]
    return out


class _ViewPrediction:
    """Each LR view (V, 3, h, w) as the camera (and its codec, ``quality``) would show the reference translated by a
    disparity times the view's grid offset, and its error: JPEG's error depends on the image and its block grid, so a
    view is predicted on its own grid (the reference's LR image at every phase, ``prefiltered``, sampled there),
    passed through JPEG at ``quality`` and compared with the view as written.

    hci-backgammon with noise=3,jpeg=85, the reference warped by the disparity alone, 10 views: 26.44 dB with the
    plain sweep (luma, every view, 9-px box: its best), 27.03 with this one (RGB, the clean camera's settings) at the
    PSF a fit without the codec reads, 0.27 LR px, and 27.15 at the lens's true 0, which ``capture.fit_jpeg`` finds;
    the clean views' disparity gives 27.88."""

    def __init__(self, ref: torch.Tensor, lrs: torch.Tensor, offsets: torch.Tensor, scale: int, psf: float,
                 quality: int | None, luma: bool):
        seen = protocol.lens(ref, scale, psf) if psf > 0 else ref  # (3, H, W)
        self.phases = prefiltered(seen, scale)[None]  # (1, 3, H, W)
        self.offsets, self.quality, self.luma, self.scale = offsets, quality, luma, scale
        low_h, low_w = lrs.shape[-2:]
        self.grid = pixel_grid(low_h, low_w, device=ref.device, dtype=ref.dtype) * scale  # (2, h, w) in HR px
        self.target = protocol.luma(lrs) if luma else lrs  # (V, 1 or 3, h, w)

    def predict(self, disparity: torch.Tensor | float) -> torch.Tensor:
        """-> (V, 3, h, w): each view as the camera, before any codec, shows the reference at ``disparity`` (a number,
        or (V, 1, h, w) per view and LR pixel)."""
        views, _, low_h, low_w = self.target.shape
        coords = self.grid[None] + disparity * self.offsets[:, :, None, None]  # (V, 2, h, w): view p shows ref p + t
        coords = coords.permute(1, 0, 2, 3).reshape(1, 2, views * low_h, low_w)  # the views stacked on rows
        predicted = sample(self.phases, coords)  # (1, 3, V*h, w)
        return predicted.reshape(3, views, low_h, low_w).permute(1, 0, 2, 3)  # (V, 3, h, w)

    def residual(self, disparity: torch.Tensor | float) -> torch.Tensor:
        """-> (V, 1 or 3, h, w): each view's prediction, through the codec where there is one, minus the view. The
        codec's gradient is its colour subsampling's (``protocol.jpeg_with_gradient``), so a disparity can be fitted
        through it."""
        predicted = self.predict(disparity)
        if self.quality is not None:
            predicted = protocol.jpeg_with_gradient(predicted, self.quality)
        if self.luma:
            predicted = protocol.luma(predicted)
        return predicted - self.target

    def error(self, disparity: torch.Tensor | float) -> torch.Tensor:
        """-> (V, 1, h, w): the mean absolute difference over colours between each view and its prediction."""
        return self.residual(disparity).abs().mean(1, keepdim=True)

    def disparity_at_views(self, disparity: torch.Tensor, iterations: int = 2) -> torch.Tensor:
        """The reference's ``disparity`` (1, 1, h2, w2), on the sweep's working grid, at each view's LR pixels ->
        (V, 1, h, w): view pixel p shows reference point c(p) + d (dv, du), with c(p) the LR pixel's HR centre and d
        the disparity there, a fixed point found by a few bilinear iterations (differentiable, unlike
        ``view_disparity``'s nearest sampling, and smooth enough for a refinement)."""
        views, _, low_h, low_w = self.target.shape
        work_h, work_w = disparity.shape[-2:]
        centres = self.grid + (self.scale - 1) / 2  # (2, h, w) HR centres of the LR pixels
        per_hr = work_w / (low_w * self.scale)  # working pixels per HR pixel
        field = disparity.expand(views, 1, work_h, work_w)

        def lookup(shift: torch.Tensor) -> torch.Tensor:  # (V, 1, h, w) -> d at c(p) + shift (dv, du)
            return sample(field, (centres[None] + shift * self.offsets[:, :, None, None] + 0.5) * per_hr - 0.5)

        current = lookup(torch.zeros(views, 1, low_h, low_w, device=disparity.device, dtype=disparity.dtype))
        for _ in range(iterations):
            current = lookup(current)
        return current


def _refine_disparity(disparity: torch.Tensor, predict: _ViewPrediction, steps: int, noise: float) -> torch.Tensor:
    """The swept ``disparity`` (h2, w2) fitted to every LR view at once -> (h2, w2): ``steps`` Adam steps on the map,
    minimising the Charbonnier residual of all views' predictions (``_ViewPrediction.residual``, through the codec
    where there is one; epsilon the camera's ``noise``, at least 1/255) plus the map's total variation
    (``DISPARITY_REFINE``).

    Why: the sweep chooses each pixel's disparity alone, from a box of costs, among steps of 0.1; the fit weighs all
    views' pixels together, continuously, and its smoothness replaces the box."""
    eps = max(noise, 1.0) / 255
    with torch.inference_mode(False), torch.enable_grad():
        field = disparity.clone()[None, None].requires_grad_(True)  # (1, 1, h2, w2)
        optimiser = torch.optim.Adam([field], lr=DISPARITY_REFINE["step"])
        for _ in range(steps):
            optimiser.zero_grad()
            residual = predict.residual(predict.disparity_at_views(field))  # (V, C, h, w)
            (charbonnier(residual, eps) + DISPARITY_REFINE["smooth"] * total_variation(field)).backward()
            optimiser.step()
    return field.detach()[0, 0]


def _subpixel_argmin(costs: torch.Tensor, candidates: torch.Tensor, step: float) -> torch.Tensor:
    """Per pixel, the candidate of least cost (D, H, W) refined by a parabola through its neighbours -> (H, W)."""
    best = costs.argmin(0).clamp(1, len(candidates) - 2)  # (H, W); the range ends get no parabola
    left, centre, right = (costs.gather(0, (best + k)[None])[0] for k in (-1, 0, 1))
    curvature = (left - 2 * centre + right).clamp_min(1e-12)
    shift = ((left - right) / (2 * curvature)).clamp(-0.5, 0.5)
    return candidates[best] + shift * step


def view_disparity(disparity: torch.Tensor, offset: tuple[int, int], iterations: int = 10,
                   tolerance: float = 0.05) -> torch.Tensor:
    """The disparity (H, W) of view ``offset`` = (du, dv) from the reference's ``disparity`` (H, W).

    Target pixel x shows the point the reference shows at x + d_t(x) (dv, du), so d_t(x) = d_ref(x + d_t(x) (dv, du)):
    a fixed point, found by iteration (nearest sampling keeps depth edges sharp). Where an occluder and what it hides
    both satisfy it, the larger disparity (nearer, in this convention) wins: the iteration runs from the largest and
    from the smallest disparity, and the larger of the two results is kept where it is consistent.
    """
    direction = _baseline(offset, disparity)  # (2, 1, 1)
    grid = pixel_grid(*disparity.shape, device=disparity.device, dtype=disparity.dtype)  # (2, H, W)
    source = disparity[None, None]  # (1, 1, H, W)

    def lookup(current: torch.Tensor) -> torch.Tensor:  # d_ref(x + d (dv, du)), (H, W)
        return sample(source, (grid + current[None] * direction)[None], mode="nearest")[0, 0]

    results = []
    for start in (disparity.max(), disparity.min()):
        current = torch.full_like(disparity, float(start))
        for _ in range(iterations):
            current = lookup(current)
        results.append(current)
    near, far = results
    consistent = (lookup(near) - near).abs() <= tolerance
    return torch.where(consistent & (near > far), near, far)


def disparity_hypotheses(disparity: torch.Tensor, spreads=EDGE_SPREADS) -> list[torch.Tensor]:
    """The estimate, and for each spread s its local maximum and minimum over (2 s + 1)^2 pixels: near depth edges,
    which the LR views blur, the true disparity is often one of the two sides' (hci-backgammon, 11 views, gain of
    refsr over flowwarp: +0.33 dB without, +0.45 with s = 4, +0.63 with s = 12)."""
    hypotheses = [disparity]
    for spread in spreads:
        size = 2 * spread + 1
        hypotheses.append(F.max_pool2d(disparity[None, None], size, stride=1, padding=spread)[0, 0])  # (H, W) near
        hypotheses.append(-F.max_pool2d(-disparity[None, None], size, stride=1, padding=spread)[0, 0])  # far
    return hypotheses


def view_flow(disparity: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Flow (2, H, W) from view ``offset`` = (du, dv) to the reference, given the reference's ``disparity`` (H, W)."""
    return view_disparity(disparity, offset)[None] * _baseline(offset, disparity)


def _baseline(offset: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """Grid offset (du, dv) -> the flow per unit of disparity, (dv, du) as (x, y), shaped (2, 1, 1) like ``like``."""
    du, dv = offset
    return torch.tensor([dv, du], dtype=like.dtype, device=like.device)[:, None, None]
