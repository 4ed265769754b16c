"""``refsr``: RefSR-Net's SS-Net synthesis on a densely aligned reference (the default RefSR method).

The reference is aligned to the target by the flowwarp chain (DIS flow on the equally blurred images, trust map,
back-projected estimate); SS-Net takes the aligned reference, the estimate and the trust map (``hr_in_channels=7``)
with the frozen SRResNet + NN LR features and predicts a residual over the estimate, fully convolutionally (tiles with
a halo bound memory), and a final back-projection makes the result agree with the LR view (for a noisy LR camera,
instead, the result moves towards the aligned reference where SS-Net took it: ``NOISY_REFERENCE_PULL``). CC-Net's
part: in a video (and wherever no light-field disparity gives candidate flows), its matches, densified from the
8-pixel centre grid, and DIS refined from them compete with DIS per LR pixel; they win where the motion is larger than
DIS's pyramid reaches. Warped by CC-Net's matches alone, the reference scored 1.5-2.3 dB below the DIS warp on
hci-backgammon and both Sintel folders (the grid is too coarse for the final pixel), so they are candidates, never the
only flow.
In a light field run through the pipeline (``lightfield=True``), the reference's disparity is first estimated from all
LR views at once (``lfrefsr.lightfield``), and each view keeps, per LR pixel, the best of its DIS flow and the flows
that disparity and its local extremes near depth edges give. In a video, the first result is aligned to the
reference once more, HR against HR (``realign``), and those flows compete in a second pass, whose chosen flow is
refined through the LR camera model (``refine``). The paper's own design
is ``refsr_paper`` (``lfrefsr.methods.refsr_paper``), also reached as ``refsr`` with ``variant="paper"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lfrefsr import protocol
from lfrefsr.capture import noisy
from lfrefsr.errors import LfrefsrError
from lfrefsr.lightfield import MIN_VIEWS, disparity_hypotheses, estimate_disparity, sweep_settings, view_flow
from lfrefsr.methods.base import Method, Side, ViewHint, register
from lfrefsr.methods.flowwarp import (
    FlowContext,
    FlowWarp,
    Variational,
    back_project,
    back_project_steps,
    dis_flow,
    gray_u8,
    soft_threshold,
)
from lfrefsr.methods.networks import SynthesisNetworks, SynthesisOptions
from lfrefsr.methods.options import CameraOptions, option
from lfrefsr.models.ssnet import GUIDE_CHANNELS

# SS-Net's final back-projection steps, by LR camera. The protocol's camera: SS-Net's output already nearly agrees
# with the LR view, and each further step adds frame-to-frame flicker for nothing. Sintel alley_1 clean / final,
# previous HR frame as reference, 10 -> 2 -> 1 steps: RGB PSNR 32.748 -> 32.748 -> 32.743 and 38.207 -> 38.210 ->
# 38.202, flicker 2.231 -> 2.214 -> 2.202 and 1.437 -> 1.420 -> 1.407 (flowwarp 2.187, 1.399); seq-0016-0025
# 31.17 / 31.17 / 31.16; hci-backgammon 28.88 at all three, 0.80 -> 0.68 s per view. A lens blur (psf) SS-Net never saw
# leaves more to correct: alley_1 with psf=gauss:0.6, 2 / 3 / 5 / 10 steps: 32.067 / 32.072 / 32.078 / 32.083.
# A noisy camera gets none (flowwarp.back_project_steps): its LR view is no better evidence than SS-Net's output, and
# projecting onto it brought its noise back (noise=3,jpeg=85, 10 frames or views: -0.08 dB on Sintel alley_1, -0.06
# seq-0016-0025, -0.04 hci-backgammon).
BACK_PROJECT = {"protocol": 2, "lens": 10}

# A noisy LR camera's result pulled towards the aligned reference where SS-Net itself took the reference:
# sr + pull * M(0) * (warped - sr). SS-Net learnt its synthesis from the protocol's clean LR views; a noisy camera's
# LR features (protocol_view) carry the codec's and the sensor's error, and SS-Net's re-synthesis of what it took from
# the reference came out below the aligned reference itself (Sintel alley_1 noise=3,jpeg=85, final pass: the warp
# 31.23 dB, SS-Net's result 31.15). refsr, RGB PSNR, every view or frame, --degrade noise=3,jpeg=85, pull 0 / 0.5 /
# 0.75 / 1: hci-backgammon 27.288 / 27.350 / 27.371 / 27.384, alley_1 clean 31.147 / 31.298 / 31.307 / 31.304, final
# 35.434 / 35.795 / 35.924 / 35.938, seq-0016-0025 29.687 / 29.805 / 29.783 / 29.760, synthetic 8x8 light fields
# (make_lightfield seeds 0, 1) 28.594 / 28.648 / 28.617 / 28.547 and 33.605 / 33.782 / 33.811 / 33.792 (mean 30.959 /
# 31.113 / 31.136 / 31.121). At 0.75, alley_1 / seq / hci-backgammon: jpeg=85 31.348 -> 31.482, 29.870 -> 29.988,
# 27.311 -> 27.397; h264=28 25.785 -> 26.186, 24.767 -> 25.021, 24.413 -> 24.375; noise=3 32.134 -> 32.191,
# 30.668 -> 30.638. Pulled everywhere alike (0.5), not by M(0), the synthetic light fields lost (27.857 and 33.238)
# where hci-backgammon gained (27.431); weighed by the alignment's trust instead of M(0), seed 0 still lost (28.489).
# A clean or lens-blurred camera's result is back-projected onto its LR view instead (BACK_PROJECT) and not pulled.
NOISY_REFERENCE_PULL = 0.75


# Where no light-field disparity gives candidate flows (video, --per-view) and the LR camera is not noisy, DIS at
# these patch sides compete per LR pixel instead. refsr, RGB PSNR, all frames, single DIS (the camera's rule) -> these
# three: Sintel alley_1 clean 32.43 -> 32.56, final 38.05 -> 38.18, seq-0016-0025 30.87 -> 30.99; psf=gauss:0.6
# 31.98 -> 32.03, 30.38 -> 30.40; 0.52 -> 0.59 s per alley_1 frame. A noisy view cannot judge them (noise=3,jpeg=85
# 30.50 -> 30.50, 28.91 -> 29.00; h264=28 25.17 -> 24.99, 24.50 -> 24.33), so it keeps the one DIS flow.
DIS_PATCHES = (8, 12, 16)

# Where those flows compete (estimates of one motion, unlike a light field's disparity hypotheses), a softmax over
# their LR disagreement at this temperature weighs them (``select_flow``) instead of the best one taken: near-ties,
# where the hard choice flips from frame to frame, are averaged. refsr, RGB PSNR / flicker, hard -> 0.0002 / 0.0003 /
# 0.0005 / 0.001: Sintel alley_1 clean 32.775 / 2.243 -> 32.791 / 2.206, 32.790 / 2.199, 32.781 / 2.190,
# 32.749 / 2.180; final 38.204 / 1.451 -> 38.234 / 1.424, 38.246 / 1.418, 38.259 / 1.410, 38.258 / 1.401;
# seq-0016-0025 31.238 / 2.670 -> 31.254, 31.256, 31.255, 31.233; seq --keyframe-every 4 --reference keyframe
# 30.625 -> 0.0003 30.631, 0.0005 30.625; psf=gauss:0.6 alley_1 32.083 -> 32.130, 32.126 and seq 30.530 -> 30.571,
# 30.565. On hci-backgammon's disparity hypotheses it lost (28.877 -> 28.847 at 0.0002, 28.748 at 0.0005).
SELECT_TEMPERATURE = 0.0003

# Re-alignment (``realign``): refsr's first result is sharp wherever the reference was trusted and agrees with the LR
# view (the back-projection), so DIS between it and the sharp reference (HR against HR, which no LR view allows)
# finds the motion's detail the LR view's flow lacks. These flows, each (DIS preset, patch side), compete with the
# first pass's chosen flow (and the camera's DIS) in a second pass. Given the HR frame's own DIS flow instead, refsr
# scored +1.7 dB on seq-0016-0025 with keyframes every 4 frames: the flow, not SS-Net, was what it lacked.
# refsr, RGB PSNR, one pass -> two (both with SELECT_TEMPERATURE): Sintel alley_1 clean 32.790 -> 32.987, final
# 38.246 -> 38.470, seq-0016-0025 31.256 -> 31.502, seq --keyframe-every 4 --reference keyframe 30.631 -> 30.871,
# --reference keyframes 31.49 -> 31.90; psf=gauss:0.6 alley_1 32.130 -> 32.208, seq 30.571 -> 30.660; flicker
# alley_1 2.199 -> 2.120, final 1.418 -> 1.375; 2.1 -> 2.7 s per alley_1 frame. A third pass (``realign=2``) adds
# +0.04 to +0.05 (33.022, 38.520, 31.554, K=4 30.920) for about 0.5 s more per frame. A light field keeps one pass:
# hci-backgammon 28.877 -> 28.951 for 0.44 -> 0.68 s per view, over the 1.5x its cost may grow (``-o realign=1``
# takes it). A noisy camera's video takes the pass too, its flows weighed softly like a clean camera's: its result is
# not back-projected, so these flows stay near the first's, but averaging them where they nearly tie, before the
# refinement, steadies the flow the noisy view cannot single out. refsr, RGB PSNR, one pass -> two with the hard choice
# -> two weighed softly (the same temperature; 0.0001 / 0.001 gave 30.939 / 30.924 and 29.543 / 29.561):
# noise=3,jpeg=85 alley_1 30.890 -> 30.905 -> 30.955, seq 29.486 -> 29.527 -> 29.577, final 35.298 -> 35.333
# (soft); noise=3 alley_1 32.010 -> 32.038, seq 30.416 -> 30.551; h264=28 25.280 -> 25.305, 24.469 -> 24.472; 2.65 ->
# 3.13 s per alley_1 frame. A third pass: 30.950, 29.570.
REALIGN_DIS = (("medium", None), ("default", 8))

# Where the flows estimate one motion (no light-field disparity: video, --per-view), refsr's DIS from the LR view is
# smoother than OpenCV's presets (alpha 20, 5 steps): a heavier smoothness weight in its variational refinement, with
# more steps. The re-alignment pass (HR against HR), the soft selection and the refinement restore the motion's
# detail; the first flows must get its bulk right, which noise, the codec and aliasing pull apart (noise=3,jpeg=85
# alley_1: refsr given the clean frame's first-pass flow, all else from the noisy one, 30.955 -> 31.458). refsr, RGB
# PSNR, every frame, presets' -> alpha 40 / 60 / 100 with 20 steps, and 60 with 50 steps: clean alley_1 33.163 ->
# 33.233 / 33.241 / 33.227 / 33.255, final 38.555 -> 38.688 / 38.718 / 38.765 / 38.722, seq-0016-0025 31.731 ->
# 31.898 / 31.912 / 31.915 / 31.929; noise=3,jpeg=85 alley_1 30.955 -> 31.119 / 31.169 / 31.148 / 31.184, final
# 35.333 -> 35.500 / 35.457 / 35.407 / 35.451, seq 29.577 -> 29.714 / 29.704 / 29.633 / 29.666 (the mean over these
# six and clean hci-backgammon, where it then also ran: 32.599 -> 32.722 / 32.731 / 32.718 / 32.728). At 60 / 20:
# noise=3 alley_1 32.038 -> 32.134, seq 30.551 -> 30.668; h264=28 25.305 -> 25.785, 24.472 -> 24.767;
# psf=gauss:0.6 32.23 -> 32.42, 30.75 -> 30.92. A light field's DIS competes with its disparity's flows, one chosen
# per pixel and never re-aligned, and keeps the presets': smoother, hci-backgammon 28.877 -> 28.914 but two synthetic
# 8x8 light fields (make_lightfield seeds 0, 1) 30.613 -> 30.516 and 37.121 -> 36.932. flowwarp, whose one flow is
# its result, keeps them too: smoother, noisy Sintel lost 0.5 dB (alley_1 30.09 -> 29.55).
DIS_VARIATIONAL = Variational(alpha=60.0, iterations=20)


# Refinement through the LR camera (``refine_flow``, ``refine``): the final pass's chosen flow, fitted to the LR view
# through the camera model (its PSF, noise and, where the capture showed one, JPEG). The LR frame holds sub-pixel
# motion DIS's patches miss, and for a noisy camera the one DIS flow is all there is: given the flow of the clean LR
# frame, refsr scored +1.46 dB (alley_1) and +1.23 (seq-0016-0025) with noise=3,jpeg=85. refsr, RGB PSNR, without ->
# with (40 steps): Sintel alley_1 clean 32.99 -> 33.16, final 38.47 -> 38.55, seq 31.50 -> 31.73; noise=3,jpeg=85
# 30.66 -> 30.90 and 29.03 -> 29.48 (with the codec left out of the model, alley_1 30.80); noise=3 alone, alley_1
# 31.46 -> 32.01 (60 steps); psf=gauss:0.6 32.21 -> 32.23 and 30.66 -> 30.75; h264=28 25.25 -> 25.28 and 24.51 -> 24.47
# (at the smoothness of a modelled camera, alley_1 25.00: hence more smoothing for error the model leaves);
# --keyframe-every 4 --reference keyframes 31.90 -> 32.08. 80 steps: the same (noise=3,jpeg=85 30.90 / 29.47). Only
# the final pass: the same as refining both (60 steps, alley_1 33.16 / 33.18, seq 31.73 / 31.71), 1 s less per
# frame. A light field keeps its disparity's flows unrefined: hci-backgammon with noise=3,jpeg=85, 26.70 -> 26.73
# (60 steps) for about 1.3 s more per 512 x 512 view, 3x its cost.
REFINE_STEPS = 40


def one_motion(context: FlowContext) -> bool:
    """Whether a view's candidate flows all estimate one motion, to be weighed softly (``SELECT_TEMPERATURE``),
    re-aligned (``realign``) and found by a smoother DIS (``DIS_VARIATIONAL``): no light-field disparity hypotheses
    (distinct layers), whatever the camera."""
    return context.disparity is None


def protocol_camera(psf: float, noise: float) -> bool:
    """Whether an LR camera (its ``psf``, ``noise``) gives the protocol's LR view, whose own SISR features SS-Net reads;
    any other camera's view is read as ``protocol_view`` gives it. Inference and SS-Net's training pairs share it."""
    return not (psf > 0 or noisy(noise))


def realigned_flows(result: torch.Tensor, context: FlowContext) -> list[torch.Tensor]:
    """DIS flows (2, H, W), one per ``REALIGN_DIS`` setting, from an HR ``result`` (3, H, W) of the target to its
    reference, both sharp."""
    target, source = gray_u8(result), gray_u8(context.ref)
    return [dis_flow(target, source, preset, patch).to(context.ref.device) for preset, patch in REALIGN_DIS]


def protocol_view(lr: torch.Tensor, estimate: torch.Tensor, scale: int, psf: float = 0.0,
                  noise: float = 0.0) -> torch.Tensor:
    """The LR view (N, 3, h, w) as the protocol's camera would have given it, from an HR ``estimate`` (N, 3, H, W) of
    the same view: the estimate's protocol image plus what the LR view says the estimate gets wrong (its residual
    through the LR camera, soft-thresholded by twice the ``noise`` like the back-projection's), 8-bit.

    Why: the frozen SRResNet + NN features SS-Net reads were trained on the protocol's LR views; a lens-blurred view is
    outside what they know. With an exact estimate this is the protocol's LR view; for the protocol's own camera
    (``psf`` 0, no noise) it is the LR view itself. Sintel alley_1 / seq-0016-0025 / hci-backgammon with
    psf=gauss:0.6, refsr: 31.69 / 30.22 / 28.69 dB with the LR view's own features, 31.99 / 30.39 / 28.67 with these
    (10 frames or views each); with noise=3,jpeg=85 on alley_1, 30.51 and 30.50."""
    residual = lr - protocol.camera_downsample(estimate, scale, psf)  # (N, 3, h, w)
    threshold = 2 * noise / 255 if noisy(noise) else 0.0
    if threshold:
        residual = soft_threshold(residual, threshold)
    view = protocol.downsample(estimate, scale) + residual
    return (view.clamp(0, 1) * 255).round() / 255


def flow_guide(aligned: dict) -> torch.Tensor:
    """SS-Net's 7-channel HR input from ``FlowWarp.align``'s output, in ``GUIDE_CHANNELS`` order: the aligned
    reference, the flowwarp estimate, the trust map -> (7, H, W). Inference, training and the benchmark share it."""
    return torch.cat([aligned["warped"], aligned["result"], aligned["weight"]], 1)[0]


def prepare_ccnet(context: FlowContext, matcher, noise: float) -> None:
    """CC-Net's reference features into ``context`` where ``align_reference`` will use them: a matcher given and a
    camera that is not noisy (a light field's disparity, where there is one, takes CC-Net's place)."""
    if matcher is not None and not noisy(noise):
        context.ccnet = matcher.prepare(context.ref)


def align_reference(flowwarp: FlowWarp, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None, *,
                    matcher=None, medium: bool = True, flow_error: torch.Tensor | None = None,
                    blend: bool = True, realigned: Sequence[torch.Tensor] = (), refine: int = 0,
                    jpeg: int | None = None) -> dict:
    """refsr's alignment of one reference to LR target (3, h, w): ``FlowWarp.align`` with the candidate flows the view
    has. A light-field view (``context.disparity`` and a grid offset): the disparity's flows beside DIS. Elsewhere, a
    camera that is not noisy: DIS at ``DIS_PATCHES``, DIS MEDIUM (``medium``) and, with a ``matcher`` (its features in
    ``context.ccnet``, ``prepare_ccnet``), CC-Net's densified matches and DIS refined from them, weighed softly
    (``SELECT_TEMPERATURE``). A noisy camera: its one DIS flow, run both ways (``symmetric_dis_flow``).
    ``realigned``: a re-alignment pass's flows (each (2, H, W)), the earlier pass's chosen flow and
    ``realigned_flows``; they compete with the camera's one DIS flow instead. ``refine``, ``jpeg``: the chosen
    flow refined through the LR camera (``refine_flow``). Without a disparity, DIS is refined as
    ``DIS_VARIATIONAL`` says. Inference and SS-Net's training pairs
    (``alignment: refsr``) share it. Returns ``align``'s dict, each (1, C, H, W)."""
    motion = one_motion(context)
    variational = DIS_VARIATIONAL if motion else None
    if realigned:
        return flowwarp.align(lr, context, flow_error, candidates=list(realigned), blend=blend,
                              temperature=SELECT_TEMPERATURE if motion else None, refine=refine, jpeg=jpeg,
                              variational=variational)
    candidates = []
    if context.disparity is not None and hint is not None and hint.grid_offset:
        candidates = [view_flow(d, hint.grid_offset) for d in context.disparity]  # each (2, H, W)
    several = not candidates and not noisy(flowwarp.noise)
    starts, presets = [], ()
    if several:
        if matcher is not None:
            coarse = matcher.match(lr, context.ccnet).dense_flow(context.ref.shape[-2:])  # (2, H, W)
            candidates, starts = [coarse], [coarse]
        presets = ("medium",) if medium else ()
    return flowwarp.align(lr, context, flow_error, candidates=candidates, patches=DIS_PATCHES if several else None,
                          starts=starts, presets=presets, blend=blend, symmetric=noisy(flowwarp.noise),
                          temperature=SELECT_TEMPERATURE if several else None, refine=refine, jpeg=jpeg,
                          variational=variational)


@dataclass(frozen=True)
class RefSROptions(SynthesisOptions, CameraOptions):
    """refsr's options."""

    chroma: float = option(1.0, "The LR camera's colour-difference noise over its luma noise (above 1.5: colour "
                                "subsampled, the disparity sweep compares luma)", camera=True)
    jpeg: int | None = option(None, "The quality of the JPEG the LR views were written as (None: no JPEG); the "
                                    "light-field disparity sweep predicts each view through it", camera=True)
    lightfield: bool = option(True, "Light field: estimate the reference's disparity from all LR views at once and "
                                    "offer its flows beside DIS (--per-view: each view alone)", flag="--lightfield")
    back_project: int | None = option(None, "Back-projection steps after SS-Net [default: BACK_PROJECT's rule: 2 "
                                            "for the protocol's LR camera, 10 for a lens blur (psf); none for a "
                                            "noisy camera]")
    reference_pull: float | None = option(None, "Share by which the result moves towards the aligned reference where "
                                                "SS-Net took the reference (its M(0)) [default: NOISY_REFERENCE_PULL, "
                                                "0.75, for a noisy LR camera, else 0]")
    realign: int | None = option(None, "Re-alignment passes: the result aligned to the reference again (DIS, HR "
                                       "against HR), those flows candidates of one more synthesis [default: 1 where no "
                                       "light-field disparity gives the flows (video, --per-view), else 0]")
    refine: int | None = option(None, "Adam steps refining the final pass's chosen flow through the LR camera model "
                                      f"(refine_flow) [default: {REFINE_STEPS} where no light-field disparity gives "
                                      "the flows (video, --per-view), else 0]")
    tile: int | None = option(64, "SS-Net tile side in LR pixels, which bounds memory (None: the whole image)")
    # Where DIS_PATCHES compete (no light-field disparity, a clean LR camera), further candidates. DIS MEDIUM, RGB
    # PSNR, all frames, without -> with: Sintel alley_1 clean 32.56 -> 32.68, final 38.18 -> 38.20, seq-0016-0025
    # 30.99 -> 31.09, the same with keyframes every 4 frames 30.30 -> 30.44, psf=gauss:0.6 32.03 -> 32.09 and
    # 30.40 -> 30.51; 0.61 -> 0.65-0.67 s per alley_1 frame.
    medium_candidate: bool = option(True, "Also offer DIS with the MEDIUM preset as a candidate flow (video)")
    # CC-Net's candidates, RGB PSNR, all frames, without -> with: Sintel alley_1 clean 32.74 -> 32.78, final
    # 38.17 -> 38.20, seq-0016-0025 31.17 -> 31.24, the same with keyframes every 4 frames (--reference keyframe)
    # 30.54 -> 30.62; psf=gauss:0.6 32.07 -> 32.07 and 30.49 -> 30.51. A frame 40 px and 24 px from its reference
    # (tests/test_methods.py), over 21 photographs: DIS alone lands on the motion (within 1 px) on 0-72 % of the
    # frame, 0 % on 12 of them; with CC-Net, 56-96 % on 20 of them. Cost per Sintel frame on 2 cores: 0.17 -> 0.65 s
    # of alignment, and CC-Net's reference features, 1.2 s per 1024 x 432 reference (once per reference). A noisy
    # LR camera keeps its one DIS flow: on alley_1 with noise=3,jpeg=85, the selection with CC-Net's candidates
    # gave 30.63 dB against 30.63 without.
    ccnet_candidates: bool = option(True, "Also offer CC-Net's matches (7x7 aggregation), densified from the 8-px "
                                          "centre grid, and DIS refined from them, as candidate flows (video; "
                                          "false: faster, for small motion)")
    ccnet_search: int = option(48, "CC-Net's search range in HR pixels for ccnet_candidates (2-D, +-)")


@register
class RefSR(Method):
    name = "refsr"
    Options = RefSROptions
    variants = {"default": "refsr", "paper": "refsr_paper"}
    # the alignment's trust in the warped reference, and SS-Net's M(0): how much of the reference it took
    confidence = ("trust", "reference")
    uses_views = True  # prepare() takes the other LR views of a light field (their shared disparity)

    def __init__(self, scale: int = 8, device="cpu", **options):
        super().__init__(scale, device, **options)
        chosen = self.options
        # the shared disparity needs the light field's LR views: the pipeline reads them only when this is set
        self.uses_views = chosen.lightfield
        # the LR camera (lfrefsr.capture): the flow chain, the disparity, the back-projection
        self.psf, self.noise, self.chroma, self.jpeg = chosen.psf, chosen.noise, chosen.chroma, chosen.jpeg
        self.protocol_camera = protocol_camera(self.psf, self.noise)
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            raise LfrefsrError(f"jpeg={self.jpeg}: a JPEG quality is from 1 to 100")
        self.back_project_steps = back_project_steps(chosen.back_project, BACK_PROJECT, self.psf, self.noise)
        self.reference_pull = chosen.reference_pull
        if self.reference_pull is None:
            self.reference_pull = NOISY_REFERENCE_PULL if noisy(self.noise) else 0.0
        if not 0.0 <= self.reference_pull <= 1.0:
            raise LfrefsrError(f"reference_pull={self.reference_pull}: the pull is a share from 0 to 1")
        self.realign = chosen.realign
        if self.realign is not None and self.realign < 0:
            raise LfrefsrError(f"realign={self.realign}: the re-alignment passes are 0 or more")
        if chosen.refine is not None and chosen.refine < 0:
            raise LfrefsrError(f"refine={chosen.refine}: the refinement steps are 0 or more")
        self.synthesis = SynthesisNetworks(chosen, scale, self.device, shipped="ssnet",
                                           guide_channels=sum(GUIDE_CHANNELS.values()),
                                           recipe="pipelines/ssnet_cpu.yaml")
        self.precision = self.synthesis.precision
        self.flowwarp = FlowWarp(scale, self.device, psf=self.psf, noise=self.noise)
        self.matcher = None
        if chosen.ccnet_candidates:
            from lfrefsr.correspondence.matchers import get_matcher

            self.matcher = get_matcher("ccnet", scale=scale, search_range=chosen.ccnet_search,
                                       device=str(self.device), precision=self.precision)

    @classmethod
    def networks(cls, options: RefSROptions) -> dict[str, str]:
        found = SynthesisNetworks.names(options, "ssnet")
        return {**found, "ccnet": "ccnet"} if options.ccnet_candidates else found

    @torch.inference_mode()
    def prepare(self, ref: torch.Tensor, views: list[tuple[ViewHint, torch.Tensor]] | None = None) -> FlowContext:
        """Per-reference work, once per light field or reference frame: the blurred grey reference for the flow.
        ``views``: the LR views (hint, (3, h, w)) that share this reference; for a light field they give the
        reference's disparity (``lightfield=True``)."""
        ref = ref.to(self.device)
        context = self.flowwarp.prepare(ref)
        grid_views = [(hint.grid_offset, lr.to(self.device)) for hint, lr in views or () if hint.grid_offset]
        if self.uses_views and len(grid_views) >= MIN_VIEWS:
            disparity = estimate_disparity(ref, grid_views, self.scale, psf=self.psf,
                                           **sweep_settings(self.noise, self.chroma, self.jpeg))  # (H, W)
            context.disparity = disparity_hypotheses(disparity)  # [(H, W)]
        if context.disparity is None:
            prepare_ccnet(context, self.matcher, self.noise)
        return context

    def super_resolve_with_mask(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None):
        """-> (sr (3, H, W), M(0) (1, H, W): SS-Net's confidence in the reference, near 0 where it is ignored)."""
        sr, mask, _ = self._synthesise(lr, [(context, hint)])
        return sr, mask

    def super_resolve_with_confidence(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None
                                      ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.super_resolve_sides_with_confidence(lr, [(context, hint)])

    def super_resolve_sides(self, lr: torch.Tensor, sides: Sequence[Side]) -> torch.Tensor:
        """Each side's reference aligned as for one reference, the alignments fused per pixel by how well each
        explains the LR view (``FlowWarp.fuse``), and SS-Net run once on the fused guide."""
        return self._synthesise(lr, sides)[0]

    def super_resolve_sides_with_confidence(self, lr: torch.Tensor, sides: Sequence[Side]
                                            ) -> tuple[torch.Tensor, torch.Tensor]:
        sr, mask, trust = self._synthesise(lr, sides)
        return sr, torch.cat([trust, mask])  # (2, H, W)

    def _align(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None, blend: bool = True,
               realigned: Sequence[torch.Tensor] = (), final: bool = True) -> dict:
        """``FlowWarp.align`` of one reference with this method's candidate flows (``align_reference``); the
        ``final`` pass's chosen flow is refined through the LR camera (``refine``)."""
        refine = self.options.refine
        if refine is None:
            refine = REFINE_STEPS if context.disparity is None else 0
        return align_reference(self.flowwarp, lr, context, hint, matcher=self.matcher,
                               medium=self.options.medium_candidate, blend=blend, realigned=realigned,
                               refine=refine if final else 0, jpeg=self.jpeg)

    @torch.inference_mode()
    def _synthesise(self, lr: torch.Tensor, sides: Sequence[Side]):
        """One reference or several (each ``(context, hint)``) -> (sr (3, H, W), M(0) (1, H, W), the alignment's
        trust (1, H, W)). Each re-alignment pass aligns every reference again with the flows of the previous result
        (``realigned_flows``) and synthesises again."""
        lr = lr.to(self.device)
        passes = self.realign
        if passes is None:  # one where the flows estimate one motion, else none
            passes = int(all(one_motion(context) for context, _ in sides))
        realigned, lr_features = [() for _ in sides], None
        for done in range(1 + passes):
            alignments = [self._align(lr, context, hint, blend=len(sides) == 1, realigned=flows,
                                      final=done == passes)
                          for (context, hint), flows in zip(sides, realigned, strict=True)]
            aligned = alignments[0] if len(alignments) == 1 else self.flowwarp.fuse(lr, alignments)
            if lr_features is None or not self.protocol_camera:  # else the LR view's, which no alignment changes
                lr_features = self._lr_features(lr, aligned)
            sr, mask, trust = self._synthesis_pass(lr, aligned, lr_features)
            if done < passes:
                realigned = [[alignment["flow"][0], *realigned_flows(sr, context)]
                             for alignment, (context, _) in zip(alignments, sides, strict=True)]
        return sr, mask, trust

    def _lr_features(self, lr: torch.Tensor, aligned: dict) -> torch.Tensor:
        """The frozen SRResNet + NN features (Cl, h, w) of the LR view (3, h, w) as the protocol's camera would have
        given it (``protocol_view``, from the alignment's estimate, for any other camera)."""
        seen = lr[None]  # (1, 3, h, w)
        if not self.protocol_camera:
            seen = protocol_view(seen, aligned["result"], self.scale, self.psf, self.noise)
        with self.synthesis.autocast():
            return self.synthesis.lr_features(seen)[0]

    def _synthesis_pass(self, lr: torch.Tensor, aligned: dict, lr_features: torch.Tensor):
        """SS-Net on one (fused) alignment and the LR features, then the pull towards the aligned reference
        (``reference_pull``) and the back-projection."""
        from lfrefsr.synthesis import synthesize_image

        guide = flow_guide(aligned)  # (7, H, W)
        with self.synthesis.autocast():
            sr, mask = synthesize_image(self.synthesis.ssnet, lr_features, guide, aligned["result"][0],
                                        scale=self.scale, tile=self.options.tile)
        sr, mask = sr.float(), mask.float()  # (3, H, W), (1, H, W)
        if self.reference_pull:
            sr = sr + self.reference_pull * mask * (aligned["warped"][0].float() - sr)
        if self.back_project_steps:
            sr = back_project(sr[None], lr[None], self.scale, self.back_project_steps, self.psf, self.noise)[0]
        return sr.clamp(0.0, 1.0), mask, aligned["weight"][0].float()

    def super_resolve(self, lr: torch.Tensor, context: FlowContext, hint: ViewHint | None = None) -> torch.Tensor:
        return self.super_resolve_with_mask(lr, context, hint)[0]
