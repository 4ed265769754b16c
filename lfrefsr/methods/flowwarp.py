"""``flowwarp``: the classical baseline a user would try first, made strong.

1. Dense optical flow (OpenCV DIS) from the bicubic-upsampled target to the reference blurred by the same protocol,
   so both images carry the same frequencies.
2. The sharp HR reference is warped by that flow (``lfrefsr.warp.warp``).
3. Iterative back-projection makes the warp agree with the LR target: ``sr += up(lr - down(sr))``.
4. Where the warp cannot be trusted -- its downsampled version disagrees with the LR target, the forward and
   backward flows are inconsistent (occlusion), or the flow leaves the reference -- the result falls back to bicubic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.capture import noisy
from lfrefsr.errors import LfrefsrError
from lfrefsr.filters import charbonnier, total_variation
from lfrefsr.methods.base import Method, Side, ViewHint, register
from lfrefsr.methods.options import CameraOptions, option
from lfrefsr.warp import out_of_bounds, warp

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
PRESETS = ("default", *_PRESETS)
_MIN_SIDE = 32


@dataclass
class FlowContext:
    """flowwarp's per-reference work, which refsr's default variant extends."""

    ref: torch.Tensor  # (3, H, W) the HR reference
    ref_gray: np.ndarray  # (H, W) uint8 luma of the reference blurred as the LR camera sees it: DIS's input
    disparity: list[torch.Tensor] | None = None  # a light field's disparity hypotheses, each (H, W) (refsr)
    ccnet: Any = None  # CC-Net's dense reference features (refsr with ``ccnet_candidates``)


def gray_u8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W) uint8 luma for OpenCV."""
    rgb = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


# The DIS settings and back-projection steps of the ``default`` preset, by the LR camera: the best mean over
# hci-backgammon (12 views), Sintel alley_1 clean and final (3 frames each), seq-0016-0025 (9) and three synthetic 8x8
# light fields (8 views each), every set weighted equally (the sensitivity table is in benchmarks/README.md).
# Clean views: FAST with its own 8-px patches and 10 steps (mean 31.92 dB; 12-px patches 31.77, which won on
# hci-backgammon alone by 0.05 dB and lost on every other set). Noisy views (noise=3,jpeg=85, the capture's estimate
# in use): 12-px patches and one step (29.30; 8-px 29.23; 12-px with 10 steps 29.24, lower on all 7 sets).
# "blur": both of DIS's images blurred further (sigma, HR px), so that DIS follows structure rather than aliasing,
# noise and codec blocks. Clean, FAST / 8 / 10, blur 0 / 1 / 2 / 3 / 4: mean 31.92 / 31.97 / 32.04 / 32.07 / 32.02;
# 2 is chosen over 3 because it is better on three of the four real sets (backgammon 28.58 against 28.51, alley_1
# 31.91 / 31.89, final 37.42 / 37.37; seq 30.18 / 30.21), the synthetic light fields making up the mean. Noisy,
# FAST / 12 / 1, blur 0 / 2 / 3 / 4: 29.30 / 29.37 / 29.42 / 29.42 (3: backgammon 25.15 against 25.11).
CLEAN_DIS = {"patch": 8, "iterations": 10, "blur": 2.0}
NOISY_DIS = {"patch": 12, "iterations": 1, "blur": 3.0}

# How sharply ``FlowWarp.fuse`` prefers the reference that explains the LR view better: a softmax over the LR
# disagreement (0-1 scale) at this temperature. Sintel, --keyframe-every K --reference keyframes, the frames between
# keyframes, refsr RGB PSNR with the hard choice and at 0.003 / 0.005 / 0.01 / 0.02: seq-0016-0025 K=4 31.18 |
# 31.34 / 31.34 / 31.30 / 31.22; alley_1 clean K=2 32.89 | 33.14 / 33.18 / 33.22 / 33.25; final K=2 38.43 | 38.79 /
# 38.86 / 38.91 / 38.94; seq K=8 30.62 | 30.72 / 30.73 / 30.71. The soft blend also flickers less (seq K=4 refsr
# 2.82 hard, 2.43 at 0.01). Measured before DIS's images were blurred (the rule's blur).
FUSE_TEMPERATURE = 0.01


@dataclass(frozen=True)
class Variational:
    """DIS's variational refinement, run at every scale after its patch search: ``alpha``, the weight of the flow's
    smoothness, and ``iterations``, its fixed-point steps per scale (OpenCV's presets: 20, and 5 steps; ULTRAFAST
    none)."""

    alpha: float
    iterations: int


def dis_flow(target: np.ndarray, source: np.ndarray, preset: str = "default", patch: int | None = None,
             init: torch.Tensor | None = None, variational: Variational | None = None) -> torch.Tensor:
    """DIS flow (2, H, W) such that ``target(x) ~ source(x + flow(x))``: OpenCV's ``preset`` (``default`` is FAST),
    with ``patch``-pixel patches where given (else the preset's own), refined from the flow ``init`` (2, H, W)
    where given (DIS takes it as its starting point at every scale), with the ``variational`` refinement where given
    (else the preset's own)."""
    dis = cv2.DISOpticalFlow_create(_PRESETS["fast" if preset == "default" else preset])
    if patch is not None:
        dis.setPatchSize(int(patch))
    if variational is not None:
        dis.setVariationalRefinementAlpha(float(variational.alpha))
        dis.setVariationalRefinementIterations(int(variational.iterations))
    height, width = target.shape
    start = None if init is None else np.ascontiguousarray(init.float().permute(1, 2, 0).cpu().numpy())  # (H, W, 2)
    pad_y, pad_x = max(0, _MIN_SIDE - height), max(0, _MIN_SIDE - width)
    if pad_y or pad_x:  # DIS refuses images smaller than its patches: pad by reflection, crop the flow after
        target, source = (cv2.copyMakeBorder(im, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT) for im in (target, source))
        if start is not None:
            start = cv2.copyMakeBorder(start, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT)
    flow = dis.calc(target, source, start)[:height, :width]  # (H, W, 2)
    return torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1).contiguous()  # (2, H, W)


def inverse_flow(flow: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """The flow (2, H, W) that undoes ``flow`` (2, H, W): ``inverse(x) = -flow(x + inverse(x))``, by fixed-point
    iteration from ``-flow`` (it converges where the flow's gradient stays below 1, which smooth flows satisfy)."""
    inverse = -flow
    for _ in range(iterations):
        inverse = -warp(flow[None], inverse[None])[0]  # (2, H, W)
    return inverse


def symmetric_dis_flow(target: np.ndarray, source: np.ndarray, preset: str = "default",
                       patch: int | None = None, variational: Variational | None = None) -> torch.Tensor:
    """``dis_flow`` (2, H, W) run both ways: the forward flow averaged with the backward flow (``source`` ->
    ``target``) inverted (``inverse_flow``).

    Why: for a noisy LR camera. DIS's inverse-compositional step takes its gradients from the patches it places; run
    backwards, those are the clean reference's, and the noisy view is only searched. refsr on Sintel with
    noise=3,jpeg=85 (the LR frame's flow as the only candidate): alley_1 30.63 (forward) / 30.67 (backward, inverted)
    / 30.68 (both, averaged), seq-0016-0025 29.12 / 29.13 / 29.15."""
    forward = dis_flow(target, source, preset, patch, variational=variational)
    return (forward + inverse_flow(dis_flow(source, target, preset, patch, variational=variational))) / 2


def soft_threshold(residual: torch.Tensor, threshold: float) -> torch.Tensor:
    """Each residual shrunk towards 0 by ``threshold``: what lies within it is no evidence (the LR camera's noise)."""
    return torch.sign(residual) * (residual.abs() - threshold).clamp_min(0)


def back_project_steps(requested: int | None, rule: dict[str, int], psf: float, noise: float) -> int:
    """The back-projection steps a method runs after its network: ``requested`` where the user gave it (0 or more),
    else by the LR camera, from the method's own ``rule`` (measured for its network): ``rule["lens"]`` through a lens
    blur (``psf`` > 0), ``rule["protocol"]`` for the protocol's camera, and none for a noisy camera
    (``capture.noisy``), whose view is no better evidence than the network's result."""
    if requested is not None:
        if requested < 0:
            raise LfrefsrError(f"back_project={requested}: the back-projection steps are 0 or more")
        return requested
    return 0 if noisy(noise) else rule["lens" if psf > 0 else "protocol"]


def back_project(sr: torch.Tensor, lr: torch.Tensor, scale: int, iterations: int, psf: float = 0.0,
                 noise: float = 0.0) -> torch.Tensor:
    """Iterative back-projection: corrects ``sr`` (N, 3, H, W) until ``down(sr)`` matches ``lr`` (N, 3, h, w), ``down``
    the LR camera's image (``protocol.camera_downsample`` with its ``psf``; the protocol's for 0).

    With the camera's ``noise`` (sigma in 1/255), a residual within twice the noise is no evidence: each residual
    is soft-thresholded by 2 sigma, so the LR view's noise is not pushed into the result. On Sintel alley_1 with
    noise=3,jpeg=85 (estimated noise 5.2/255), flowwarp scored 26.68 dB with the plain residual, 27.57 / 28.03 /
    28.21 / 28.26 dB at 0.5 / 1 / 1.5 / 2 sigma, and 28.26 with no back-projection at all."""
    size = sr.shape[-2:]
    threshold = 2 * noise / 255
    for _ in range(iterations):
        residual = lr - protocol.camera_downsample(sr, scale, psf)
        if threshold > 0:
            residual = soft_threshold(residual, threshold)
        sr = sr + F.interpolate(residual, size=size, mode="bicubic", align_corners=False)
    return sr.clamp(0.0, 1.0)


def noise_window(noise: float) -> int:
    """LR pixels over which a residual is averaged before its size is judged: 3 x 3 for a noisy LR camera
    (``capture.noisy``), which divides the noise's share by 3; none for a clean one, whose LR view holds detail at
    every pixel."""
    return 3 if noisy(noise) else 1


def lr_disagreement(warped: torch.Tensor, lr: torch.Tensor, scale: int, psf: float = 0.0,
                    noise: float = 0.0) -> torch.Tensor:
    """How far a warped reference (N, 3, H, W), seen by the LR camera (PSF ``psf``, then the protocol), is from the LR
    view (N, 3, h, w): the mean absolute difference over colours, (N, 1, h, w), of the residual averaged over
    ``noise_window(noise)`` LR pixels. The trust map and the flow selection both judge warps by it.

    Why the average for noisy views: the residual of a perfect warp is then the LR camera's noise, and its mean
    absolute value (0.8 sigma) alone dropped the trust of correct warps to 0.7; averaged first, the trust of flowwarp
    on Sintel alley_1 / seq-0016-0025 with noise=3,jpeg=85 (estimated noise 5.2 / 5.6) went from 0.74 / 0.72 to
    0.91 / 0.88 and its result from 28.27 / 27.08 to 29.92 / 28.48 dB (8 frames each)."""
    residual = protocol.camera_downsample(warped, scale, psf) - lr  # (N, 3, h, w)
    window = noise_window(noise)
    if window > 1:
        residual = F.avg_pool2d(residual, window, stride=1, padding=window // 2, count_include_pad=False)
    return residual.abs().mean(dim=1, keepdim=True)


def local_disagreement(warped: torch.Tensor, lr: torch.Tensor, scale: int, window: int = 3, psf: float = 0.0,
                       noise: float = 0.0, penalty: torch.Tensor | None = None) -> torch.Tensor:
    """``lr_disagreement`` (N, 1, h, w), plus a ``penalty`` per LR pixel where given, averaged over each pixel's
    ``window`` x ``window`` LR neighbourhood: how ``select_flow`` and ``FlowWarp.fuse`` judge a warp."""
    disagreement = lr_disagreement(warped, lr, scale, psf, noise)  # (N, 1, h, w)
    if penalty is not None:
        disagreement = disagreement + penalty
    return F.avg_pool2d(disagreement, window, stride=1, padding=window // 2, count_include_pad=False)


def select_flow(ref: torch.Tensor, lr: torch.Tensor, scale: int, flows: list[torch.Tensor], window: int = 3,
                psf: float = 0.0, noise: float = 0.0, temperature: float | None = None) -> torch.Tensor:
    """Per LR pixel, the flow whose warp of ``ref`` (1, 3, H, W) agrees best with ``lr`` (1, 3, h, w) over its
    ``window`` x ``window`` LR neighbourhood; choices are blended bilinearly at HR so the flow has no seams.
    flows: each (1, 2, H, W). ``temperature`` (on the 0-1 disagreement): the flows are weighted by a softmax of
    their disagreement instead of the best one taken, so near-ties are averaged (for flows that estimate one motion;
    a light field's disparity hypotheses are distinct layers and keep the hard choice)."""
    errors = torch.cat([local_disagreement(warp(ref, flow), lr, scale, window, psf, noise) for flow in flows], 1)
    if temperature is None:
        choice = F.one_hot(errors.argmin(dim=1), len(flows)).permute(0, 3, 1, 2).to(ref.dtype)  # (1, K, h, w)
    else:
        choice = torch.softmax(-errors / temperature, dim=1)  # (1, K, h, w)
    choice = F.interpolate(choice, size=flows[0].shape[-2:], mode="bilinear", align_corners=False)  # (1, K, H, W)
    return sum(choice[:, k : k + 1] * flow for k, flow in enumerate(flows))  # (1, 2, H, W)


# Flow refinement through the LR camera (``refine_flow``): the correction's grid (LR pixels), the weight of its total
# variation, Adam's step (HR px), and the camera noise (1/255) above which, with no JPEG found, the weight grows in
# proportion. Sintel alley_1 (4 frames) with noise=3,jpeg=85, the reference warped by DIS's flow 30.50 dB, by the flow
# of the clean LR frame 31.53; refined (60 steps, the codec left out of the model): grid 2 at weight 0.02 / 0.05 / 0.1
# 30.81 / 30.67 / 30.58, with no weight 25.78; grid 1 at 0.02 / 0.1 / 0.3 / 1 28.98 / 30.79 / 30.60 / 30.55; grid 3
# 30.69; grids 4 then 2, or 8, 4 then 2, 30.76. With the codec modelled, grid 2 at 0.02: 30.92 (seq-0016-0025, 5
# frames: 29.38 -> 30.14, clean frame's flow 30.35); weights that follow the reference's edges 29.92-30.64. The DIS
# flow scores 6.61 on the Charbonnier data term, the clean frame's flow 6.67 and the refined 6.43: the noisy view
# cannot single out the true flow, so the smoothness, not more steps, sets how far the refinement may go. h264=28
# (noise 8.4, no JPEG found), refsr: 25.25 -> 25.00 at weight 0.02, 25.28 at 0.06 and at 0.2.
REFINE = {"grid": 2, "smooth": 0.02, "step": 0.3, "noise": 3.0}


def refine_flow(ref: torch.Tensor, lr: torch.Tensor, flow: torch.Tensor, scale: int, steps: int, psf: float = 0.0,
                noise: float = 0.0, jpeg: int | None = None) -> torch.Tensor:
    """``flow`` (1, 2, H, W) corrected so that ``ref`` (1, 3, H, W) warped by it and seen by the LR camera explains
    the LR view ``lr`` (1, 3, h, w): ``steps`` Adam steps on a correction held on a grid of ``REFINE["grid"]`` LR
    pixels and brought to HR bilinearly (so the flow's own edges stay), minimising the Charbonnier residual (its
    epsilon the camera's ``noise``, at least 1/255) plus the correction's total variation. ``jpeg``: the LR views were
    written as JPEG at that quality, and the prediction passes through it too (``protocol.jpeg_with_gradient``: the
    gradient of its colour subsampling), so the flow does not bend to fit the codec's error, which the image fixes.
    Sintel noise=3,jpeg=85, refsr: alley_1 30.905 / seq 29.478 dB with a straight-through gradient, 30.897 / 29.484
    with the colour's.

    Why: DIS matches the upsampled LR view with the blurred reference, patch by patch; this asks the camera model
    itself, over every LR pixel at once."""
    height, width = flow.shape[-2:]
    h, w = lr.shape[-2:]
    grid = REFINE["grid"]
    eps = max(noise, 1.0) / 255
    # error the camera model leaves unexplained (noise above REFINE["noise"] with no JPEG found: an H.264 stream) is
    # smoothed over proportionally more
    smooth = REFINE["smooth"] * (1.0 if jpeg is not None else max(1.0, noise / REFINE["noise"]))
    # the method runs under inference mode; the correction is fitted with autograd on copies of its inputs
    with torch.inference_mode(False), torch.enable_grad():
        ref, lr, flow = ref.clone(), lr.clone(), flow.clone()
        correction = torch.zeros(1, 2, -(-h // grid), -(-w // grid), device=flow.device, requires_grad=True)
        optimiser = torch.optim.Adam([correction], lr=REFINE["step"])

        def corrected() -> torch.Tensor:
            return flow + F.interpolate(correction, size=(height, width), mode="bilinear", align_corners=False)

        for _ in range(steps):
            optimiser.zero_grad()
            seen = protocol.camera_downsample(warp(ref, corrected()), scale, psf)  # (1, 3, h, w)
            if jpeg is not None:
                seen = protocol.jpeg_with_gradient(seen, jpeg)
            (charbonnier(seen - lr, eps) + smooth * total_variation(correction) / scale).backward()
            optimiser.step()
        with torch.no_grad():
            return corrected()


@dataclass(frozen=True)
class FlowWarpOptions(CameraOptions):
    """flowwarp's options. The LR camera (``psf``, ``noise``) is used wherever the reference is compared with the LR
    view (the blur before DIS, the trust, the back-projection); the noise widens the trust's tolerance by the
    disagreement that noise alone makes and keeps the back-projection from pushing noise into the result."""

    preset: str = option("default", "DIS preset; default is FAST with the patch side and back-projection steps "
                                    "CLEAN_DIS or NOISY_DIS give for the LR camera", choices=PRESETS)
    patch: int | None = option(None, "DIS patch side in pixels [default: the preset's rule]")
    iterations: int | None = option(None, "Back-projection steps [default: the preset's rule]")
    dis_blur: float | None = option(None, "Gaussian blur (sigma, HR pixels) of both of DIS's images beyond the LR "
                                          "camera's own [default: the preset's rule]")
    tolerance: float = option(0.03, "LR disagreement at which the trust in the warp falls to 1/e")
    # no occlusion check by default: it measured worse on hci-backgammon (27.64 dB without, 27.07 with 5 px)
    consistency: float | None = option(None, "Forward-backward flow threshold in pixels for the occlusion check "
                                             "[default: none]")


@register
class FlowWarp(Method):
    name = "flowwarp"
    Options = FlowWarpOptions
    confidence = ("trust",)  # the trust in the warped reference (1: the warp, 0: bicubic)

    def __init__(self, scale: int = 8, device="cpu", **options):
        super().__init__(scale, device, **options)
        chosen = self.options
        self.psf, self.noise = chosen.psf, chosen.noise
        rule = (NOISY_DIS if noisy(self.noise) else CLEAN_DIS) if chosen.preset == "default" else {
            "patch": None, "iterations": 10, "blur": 0.0}
        if chosen.dis_blur is None:
            # the rule's blur tops up the LR camera's own lens blur (psf, LR px) to its sigma: a lens that blurs as
            # much needs none added (Sintel psf=gauss:0.6, flowwarp: 2 px more cost alley_1 0.09 dB and seq 0.08)
            self.dis_blur = math.sqrt(max(0.0, rule["blur"] ** 2 - (self.psf * self.scale) ** 2))
        else:
            self.dis_blur = chosen.dis_blur
        self.preset = chosen.preset
        self.patch = rule["patch"] if chosen.patch is None else chosen.patch
        self.iterations = rule["iterations"] if chosen.iterations is None else chosen.iterations
        # the mean absolute difference over 3 channels of Gaussian noise of sigma s is about 0.8 s, divided by the
        # window's side where the residual is averaged first
        self.tolerance = math.hypot(chosen.tolerance, 0.8 * self.noise / 255 / noise_window(self.noise))
        self.consistency = chosen.consistency

    def prepare(self, ref: torch.Tensor) -> FlowContext:
        ref = ref.to(self.device)
        return FlowContext(ref, self._dis_image(gray_u8(protocol.blur(ref, self.scale, self.psf))))

    def _dis_image(self, gray: np.ndarray) -> np.ndarray:
        """DIS's input (H, W) uint8, blurred further by ``dis_blur``, so that DIS matches the structure rather than
        aliasing, the LR camera's noise and the codec's blocks."""
        return cv2.GaussianBlur(gray, (0, 0), self.dis_blur) if self.dis_blur else gray

    def align(self, lr: torch.Tensor, context: FlowContext, flow_error: torch.Tensor | None = None,
              candidates: list[torch.Tensor] | None = None, patches: tuple[int, ...] | None = None,
              starts: list[torch.Tensor] | None = None, presets: tuple[str, ...] = (), blend: bool = True,
              symmetric: bool = False, temperature: float | None = None, refine: int = 0,
              jpeg: int | None = None, variational: Variational | None = None) -> dict:
        """The flowwarp chain for LR target (3, h, w), keeping its intermediates (refsr builds on them):
        flow (1, 2, H, W) target -> reference, warped (1, 3, H, W) reference aligned to the target, weight
        (1, 1, H, W) trust in the warp, result (1, 3, H, W) the flowwarp output. ``flow_error`` (2, H, W) is added
        to the flow (SS-Net training: real flows are less accurate than DIS on synthetic pairs). ``candidates``, other
        flows (2, H, W) (from a light field's shared disparity): per LR pixel, the best of them and DIS is kept; for
        a noisy LR camera (``capture.noisy``) the candidates alone, without DIS. ``patches``: DIS runs once per patch
        side given (default: this camera's one) and the flows compete like candidates. ``starts``, flows (2, H, W)
        (CC-Net's matches): DIS refined from each competes too; ``presets``: so does DIS with each further preset.
        ``blend=False`` leaves out the result (``fuse`` blends the fused warp instead). ``symmetric``: each DIS flow at
        ``patches`` is run both ways and averaged (``symmetric_dis_flow``). ``temperature``: the flows compete softly
        (``select_flow``). ``refine``: steps of ``refine_flow`` on the chosen flow, through JPEG at quality ``jpeg``
        where given. ``variational``: every DIS flow refined so (``dis_flow``), else as its preset does.

        Why: a noisy or compressed LR view cannot tell a slightly wrong warp from a right one, and DIS, run on that
        one view, is the flow most often wrong. hci-backgammon, reference warped by the selected flow, 10 views:
        noise=3,jpeg=85 DIS + candidates 25.70 dB, candidates alone 26.34; noise=3 27.59 and 27.65; clean 29.11
        and 28.72 (so the clean camera keeps DIS)."""
        ref = context.ref
        lr = lr.to(self.device)[None]  # (1, 3, h, w)
        up = protocol.upsample(lr, self.scale)  # (1, 3, H, W)
        up_gray = self._dis_image(gray_u8(up[0]))
        flows = [c[None].to(self.device) for c in candidates or ()]  # each (1, 2, H, W)
        if not flows or not noisy(self.noise):
            dis = symmetric_dis_flow if symmetric else dis_flow
            flows[:0] = [dis(up_gray, context.ref_gray, self.preset, patch, variational=variational)[None]
                         .to(self.device) for patch in patches or (self.patch,)]
        flows += [dis_flow(up_gray, context.ref_gray, self.preset, self.patch, init=start,
                           variational=variational)[None].to(self.device) for start in starts or ()]
        flows += [dis_flow(up_gray, context.ref_gray, preset, variational=variational)[None].to(self.device)
                  for preset in presets]
        if flow_error is not None:
            flows[0] = flows[0] + flow_error[None].to(flows[0])
        flow = flows[0] if len(flows) == 1 else select_flow(ref[None], lr, self.scale, flows, psf=self.psf,
                                                             noise=self.noise, temperature=temperature)
        if refine:
            flow = refine_flow(ref[None], lr, flow, self.scale, refine, self.psf, self.noise, jpeg)
        warped = warp(ref[None], flow)  # (1, 3, H, W)

        # Trust: agreement of the raw warp with the LR target, measured at LR scale and brought back up.
        disagreement = lr_disagreement(warped, lr, self.scale, self.psf, self.noise)  # (1, 1, h, w)
        weight = torch.exp(-((disagreement / self.tolerance) ** 2))
        weight = F.interpolate(weight, size=up.shape[-2:], mode="bilinear", align_corners=False)
        weight = weight * (~out_of_bounds(flow, ref.shape[-2:])).float()[:, None]  # (1, 1, H, W)
        if self.consistency is not None:  # occlusion: the backward flow must return to the start
            flow_back = dis_flow(context.ref_gray, up_gray, self.preset, self.patch,
                                 variational=variational)[None].to(self.device)
            round_trip = flow + warp(flow_back, flow)  # (1, 2, H, W), zero where consistent
            consistent = (round_trip.norm(dim=1, keepdim=True) < self.consistency).float()
            weight = weight * F.avg_pool2d(consistent, 5, stride=1, padding=2)  # soften the occlusion edge
        aligned = {"flow": flow, "warped": warped, "weight": weight}
        return {**aligned, "result": self._blend(lr, up, warped, weight)} if blend else aligned

    def _blend(self, lr: torch.Tensor, up: torch.Tensor, warped: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The warp where trusted, bicubic elsewhere, back-projected onto the LR view (1, 3, h, w) -> (1, 3, H, W).
        Blend first, then back-project, so the whole result agrees with the LR target (28.05 against 27.62 dB)."""
        blended = weight * warped + (1 - weight) * up
        return back_project(blended, lr, self.scale, self.iterations, self.psf, self.noise)

    def fuse(self, lr: torch.Tensor, alignments: list[dict], window: int = 3,
             temperature: float = FUSE_TEMPERATURE) -> dict:
        """Several references' ``align`` outputs (``blend=False`` will do) for one LR target (3, h, w) -> one, as
        ``align`` gives it but with ``source`` (1, K, H, W), each alignment's share, instead of a flow. Per LR pixel,
        each warp's disagreement with the LR view over its ``window`` x ``window`` neighbourhood (``select_flow``'s
        test, plus the share of the pixel whose flow leaves its reference) weighs it by a softmax at
        ``temperature``; the shares are brought up to HR bilinearly. A hybrid video's keyframes before and after a
        frame: what one has lost behind a moving object the other sees."""
        lr = lr.to(self.device)[None]  # (1, 3, h, w)
        errors = []
        for aligned in alignments:
            inside = (~out_of_bounds(aligned["flow"], aligned["warped"].shape[-2:])).float()[:, None]  # (1,1,H,W)
            outside = 1 - F.avg_pool2d(inside, self.scale)  # (1, 1, h, w) the share of each LR pixel outside
            errors.append(local_disagreement(aligned["warped"], lr, self.scale, window, self.psf, self.noise,
                                             penalty=outside))  # (1, 1, h, w)
        source = torch.softmax(-torch.cat(errors, dim=1) / temperature, dim=1)  # (1, K, h, w)
        source = F.interpolate(source, size=alignments[0]["warped"].shape[-2:], mode="bilinear",
                               align_corners=False)  # (1, K, H, W)
        warped = sum(source[:, k : k + 1] * aligned["warped"] for k, aligned in enumerate(alignments))
        weight = sum(source[:, k : k + 1] * aligned["weight"] for k, aligned in enumerate(alignments))
        up = protocol.upsample(lr, self.scale)  # (1, 3, H, W)
        return {"source": source, "warped": warped, "weight": weight, "result": self._blend(lr, up, warped, weight)}

    def super_resolve(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None) -> torch.Tensor:
        return self.align(lr, context)["result"][0]

    def super_resolve_with_confidence(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None
                                      ) -> tuple[torch.Tensor, torch.Tensor]:
        aligned = self.align(lr, context)
        return aligned["result"][0], aligned["weight"][0]

    def super_resolve_sides(self, lr: torch.Tensor, sides: Sequence[Side]) -> torch.Tensor:
        return self._sides(lr, sides)["result"][0]

    def super_resolve_sides_with_confidence(self, lr: torch.Tensor, sides: Sequence[Side]
                                            ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self._sides(lr, sides)
        return fused["result"][0], fused["weight"][0]

    def _sides(self, lr: torch.Tensor, sides: Sequence[Side]) -> dict:
        """Each side's reference aligned, then fused (``fuse``)."""
        if len(sides) == 1:
            return self.align(lr, sides[0][0])
        return self.fuse(lr, [self.align(lr, context, blend=False) for context, _ in sides])
