"""``refsr``: RefSR-Net = correspondences + SS-Net synthesis on the frozen SRResNet + NN LR features.

Variants:
    default  (``refsr``) dense alignment, then SS-Net on the whole image. The reference is aligned to the target by
             the flowwarp chain (DIS flow on the equally blurred images, trust map, back-projected estimate); SS-Net
             takes the aligned reference, the estimate and the trust map (``hr_in_channels=7``) with the LR features
             and predicts a residual over the estimate, fully convolutionally (tiles with a halo bound memory), and
             a final back-projection makes the result agree with the LR view. Why not CC-Net here: its matches live
             on the 8-pixel centre grid, and the reference warped by them scored 1.5-2.3 dB below the DIS warp on
             hci-backgammon and both Sintel folders; initialising DIS with them lowered backgammon by 0.3 dB
             (see the issue note). CC-Net remains the paper variant's correspondence. In a light field run through
             the pipeline (``lightfield=True``), the reference's disparity is first estimated from all LR views at
             once (``lfrefsr.lightfield``), and each view keeps, per LR pixel, the best of its DIS flow and the
             flows that disparity and its local extremes near depth edges give.
    paper    (``refsr_paper``, or ``variant="paper"``) the paper's design: CC-Net matches with a full 2-D search,
             one displacement per patch from its centre's match (``shift``), 8x8 LR patches every LR pixel
             (``stride=1``), mask-weighted blending; its own SS-Net (``hr_in_channels=3``, weights ``ssnet_paper``).
Options override a variant's settings one by one (``stride=8`` is the paper variant's fast mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lfrefsr import protocol
from lfrefsr.capability import effective_precision
from lfrefsr.capture import noisy
from lfrefsr.lightfield import MIN_VIEWS, disparity_hypotheses, estimate_disparity, sweep_settings, view_flow
from lfrefsr.methods.base import Method, ViewHint, register
from lfrefsr.methods.flowwarp import FlowContext, FlowWarp, back_project, soft_threshold
from lfrefsr.models.ssnet import GUIDE_CHANNELS

VARIANTS = {
    "default": {"alignment": "flow", "stride": None, "blend": None, "ref_patches": None, "epipolar": False,
                "back_project": 10, "lightfield": True, "aggregate": None},
    # the paper's matching: each centre's own best inner product (no aggregation over neighbouring centres)
    "paper": {"alignment": "ccnet", "stride": 1, "blend": "mask", "ref_patches": "shift", "epipolar": False,
              "back_project": 0, "lightfield": False, "aggregate": 1},
}
NETWORK = {"flow": "ssnet", "ccnet": "ssnet_paper"}  # shipped SS-Net weights per alignment
# Where no light-field disparity gives candidate flows (video, --per-view) and the LR camera is not noisy, DIS at
# these patch sides compete per LR pixel instead. refsr, RGB PSNR, all frames, single DIS (the camera's rule) -> these
# three: Sintel alley_1 clean 32.43 -> 32.56, final 38.05 -> 38.18, seq-0016-0025 30.87 -> 30.99; psf=gauss:0.6
# 31.98 -> 32.03, 30.38 -> 30.40; 0.52 -> 0.59 s per alley_1 frame. A noisy view cannot judge them (noise=3,jpeg=85
# 30.50 -> 30.50, 28.91 -> 29.00; h264=28 25.17 -> 24.99, 24.50 -> 24.33), so it keeps the one DIS flow.
DIS_PATCHES = (8, 12, 16)


@dataclass
class MatchContext:
    """The paper variant's per-reference work."""

    ref: torch.Tensor  # (3, H, W) the HR reference
    features: Any  # CC-Net's dense reference features (``Matcher.prepare``)


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


@register
class RefSR(Method):
    name = "refsr"
    learned = True
    camera = ("psf", "noise", "chroma")
    default_variant = "default"
    uses_views = True  # prepare() takes the other LR views of a light field (their shared disparity)

    def __init__(self, scale: int = 8, device="cpu", *, variant: str | None = None, stride: int | None = None,
                 blend: str | None = None, ref_patches: str | None = None, epipolar: bool | None = None,
                 back_project: int | None = None, lightfield: bool | None = None, aggregate: int | None = None,
                 search_range: int = 100,
                 ccnet_weights=None, sisr_weights=None, ssnet_weights=None, precision: str = "fp32", batch: int = 64,
                 tile: int | None = 64, psf: float = 0.0, noise: float = 0.0, chroma: float = 1.0):
        super().__init__(scale, device)
        from lfrefsr.errors import LfrefsrError
        from lfrefsr.weights import load_network

        variant = variant or self.default_variant
        if variant not in VARIANTS:
            raise LfrefsrError(f"refsr variant is one of {sorted(VARIANTS)}, not {variant!r}")
        given = {"stride": stride, "blend": blend, "ref_patches": ref_patches, "epipolar": epipolar,
                 "back_project": back_project, "lightfield": lightfield, "aggregate": aggregate}
        chosen = {**VARIANTS[variant], **{k: v for k, v in given.items() if v is not None}}
        self.variant, self.alignment = variant, chosen["alignment"]
        self.stride, self.blend, self.ref_patches = chosen["stride"], chosen["blend"], chosen["ref_patches"]
        self.epipolar, self.back_project = bool(chosen["epipolar"]), int(chosen["back_project"])
        # the shared disparity needs the light field's LR views: the pipeline reads them only when this is set
        self.uses_views = bool(chosen["lightfield"]) and self.alignment == "flow"
        self.precision, self.batch, self.tile = effective_precision(precision, self.device), batch, tile
        # the LR camera (lfrefsr.capture): the flow chain, the disparity, the back-projection
        self.psf, self.noise, self.chroma = float(psf), float(noise), float(chroma)
        self.sisr, _ = load_network("sisr", sisr_weights, device=str(self.device))
        self.ssnet, _ = load_network("ssnet", ssnet_weights, device=str(self.device),
                                     shipped=NETWORK[self.alignment])
        if self.alignment == "flow":
            self.flowwarp = FlowWarp(scale, self.device, psf=psf, noise=noise)
            wanted = sum(GUIDE_CHANNELS.values())
        else:
            from lfrefsr.correspondence.matchers import get_matcher

            self.matcher = get_matcher("ccnet", scale=scale, search_range=search_range, device=str(self.device),
                                       weights=ccnet_weights, precision=self.precision,
                                       **({} if chosen["aggregate"] is None else {"aggregate": chosen["aggregate"]}))
            wanted = 3
        if getattr(self.ssnet, "hr_in_channels", 3) != wanted:
            raise LfrefsrError(f"the SS-Net weights take {self.ssnet.hr_in_channels} HR channels; the {variant} "
                               f"variant needs {wanted} (train it with pipelines/"
                               f"{'ssnet_cpu' if wanted == 7 else 'ssnet_paper_cpu'}.yaml)")
        if self.sisr.scale != scale or self.ssnet.scale != scale:
            raise LfrefsrError(f"refsr's networks are trained for x{self.ssnet.scale}, not x{scale}: "
                               "train them for this scale (lfrefsr train ... with model.scale) or use flowwarp")

    @classmethod
    def networks(cls, options: dict | None = None) -> dict[str, str]:
        options = options or {}
        alignment = VARIANTS[options.get("variant") or cls.default_variant]["alignment"]
        found = {"sisr": str(options.get("sisr_weights") or "sisr"),
                 "ssnet": str(options.get("ssnet_weights") or NETWORK[alignment])}
        if alignment == "ccnet":
            found["ccnet"] = str(options.get("ccnet_weights") or "ccnet")
        return found

    @torch.inference_mode()
    def prepare(self, ref: torch.Tensor, views: list[tuple[ViewHint, torch.Tensor]] | None = None
                ) -> FlowContext | MatchContext:
        """Per-reference work, once per light field or reference frame: the blurred grey reference for the flow,
        or CC-Net's dense reference features. ``views``: the LR views (hint, (3, h, w)) that share this reference;
        for a light field they give the reference's disparity (``lightfield=True``)."""
        ref = ref.to(self.device)
        if self.alignment != "flow":
            return MatchContext(ref, self.matcher.prepare(ref))
        context = self.flowwarp.prepare(ref)
        grid_views = [(hint.grid_offset, lr.to(self.device)) for hint, lr in views or () if hint.grid_offset]
        if self.uses_views and len(grid_views) >= MIN_VIEWS:
            disparity = estimate_disparity(ref, grid_views, self.scale, psf=self.psf,
                                           **sweep_settings(self.noise, self.chroma))  # (H, W)
            context.disparity = disparity_hypotheses(disparity)  # [(H, W)]
        return context

    def direction(self, hint: ViewHint | None):
        """Epipolar direction (dx, dy) of a light-field view: the flow to the reference is d * (dv, du)."""
        if not self.epipolar or hint is None or hint.grid_offset is None or hint.grid_offset == (0, 0):
            return None
        du, dv = hint.grid_offset
        return (float(dv), float(du))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    @torch.inference_mode()
    def super_resolve_with_mask(self, lr: torch.Tensor, context: dict, hint: ViewHint | None = None):
        """-> (sr (3, H, W), M(0) (1, H, W): SS-Net's confidence in the reference, near 0 where it is ignored)."""
        from lfrefsr.synthesis import synthesize, synthesize_image

        lr = lr.to(self.device)
        if self.alignment == "flow":
            candidates = []
            if context.disparity is not None and hint is not None and hint.grid_offset:
                candidates = [view_flow(d, hint.grid_offset) for d in context.disparity]  # each (2, H, W)
            several = not candidates and not noisy(self.noise)
            aligned = self.flowwarp.align(lr, context, candidates=candidates,
                                          patches=DIS_PATCHES if several else None)  # each (1, C, H, W)
            guide = flow_guide(aligned)  # (7, H, W)
            seen = lr[None]  # (1, 3, h, w)
            if self.psf > 0 or noisy(self.noise):  # an LR camera other than the protocol's
                seen = protocol_view(seen, aligned["result"], self.scale, self.psf, self.noise)
            with self._autocast():
                lr_features = self.sisr.features(seen)[0]  # (Cl, h, w)
                sr, mask = synthesize_image(self.ssnet, lr_features, guide, aligned["result"][0], scale=self.scale,
                                            tile=self.tile)
        else:
            matches = self.matcher.match(lr, context.features, direction=self.direction(hint))
            with self._autocast():
                lr_features = self.sisr.features(lr[None])[0]
                base = self.sisr(lr[None])[0].float().clamp(0, 1) if self.ssnet.residual else None
                sr, mask = synthesize(self.ssnet, lr_features, context.ref, matches.flow, base, scale=self.scale,
                                      stride=self.stride, blend=self.blend, ref_patches=self.ref_patches,
                                      batch=self.batch)
        sr = sr.float()
        # A noisy LR view is no better evidence than SS-Net's output: projecting onto it brought its noise back
        # (noise=3,jpeg=85, 10 frames or views: -0.08 dB on Sintel alley_1, -0.06 seq-0016-0025, -0.04 hci-backgammon)
        if self.back_project and not noisy(self.noise):
            sr = back_project(sr[None], lr[None], self.scale, self.back_project, self.psf, self.noise)[0]
        return sr.clamp(0.0, 1.0), mask.float()

    def super_resolve(self, lr: torch.Tensor, context: dict, hint: ViewHint | None = None) -> torch.Tensor:
        return self.super_resolve_with_mask(lr, context, hint)[0]


@register
class RefSRPaper(RefSR):
    """``refsr`` with the paper's configuration (``variant="paper"``)."""

    name = "refsr_paper"
    default_variant = "paper"
