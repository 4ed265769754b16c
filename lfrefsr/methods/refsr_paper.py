"""``refsr_paper``: RefSR-Net as the paper builds it (BMVC 2017, sections 3-4).

CC-Net matches every 8x8 LR patch centre against the reference with a full 2-D search (+-``search_range`` HR pixels,
each centre's own best inner product: no aggregation over neighbouring centres), one displacement per patch from its
centre's match (``ref_patches="shift"``), SS-Net (``hr_in_channels=3``, weights ``ssnet_paper``) on 8x8 LR patches every
``stride`` LR pixels (1 in the paper; 8 is the fast mode), predictions blended by its smoothed occlusion masks
(``blend="mask"``). Also reached as ``refsr`` with ``variant="paper"`` (``--variant paper``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lfrefsr.methods.base import Method, ViewHint, register
from lfrefsr.methods.flowwarp import back_project
from lfrefsr.methods.networks import SynthesisNetworks, SynthesisOptions
from lfrefsr.methods.options import option


@dataclass(frozen=True)
class RefSRPaperOptions(SynthesisOptions):
    """refsr_paper's options."""

    ccnet_weights: str | None = option(None, "CC-Net weights file [default: the shipped ccnet]")
    search_range: int = option(100, "CC-Net's search range in HR pixels (2-D, +-)")
    aggregate: int = option(1, "Scores averaged over aggregate x aggregate neighbouring centres (odd; 1: the paper)")
    epipolar: bool = option(False, "Light field: search along each view's baseline only")
    stride: int = option(1, "LR pixels between SS-Net patches (1: the paper; 8: no overlap, the fast mode)")
    blend: str = option("mask", "How overlapping patch predictions combine", choices=("mask", "mean"))
    ref_patches: str = option("shift", "Reference patches: cut around each centre's match (shift, the paper) or "
                                       "from the reference warped by the interpolated matches (warp)",
                              choices=("shift", "warp"))
    batch: int = option(64, "SS-Net patches per batch, which bounds memory")
    back_project: int = option(0, "Back-projection steps after synthesis (0: none, as the paper)")


@dataclass
class MatchContext:
    """refsr_paper's per-reference work."""

    ref: torch.Tensor  # (3, H, W) the HR reference
    features: Any  # CC-Net's dense reference features (``Matcher.prepare``)


@register
class RefSRPaper(Method):
    name = "refsr_paper"
    Options = RefSRPaperOptions
    confidence = ("reference",)  # SS-Net's M(0): how much of the reference it took

    def __init__(self, scale: int = 8, device="cpu", **options):
        from lfrefsr.correspondence.matchers import get_matcher

        super().__init__(scale, device, **options)
        chosen = self.options
        self.synthesis = SynthesisNetworks(chosen, scale, self.device, shipped="ssnet_paper", guide_channels=3,
                                           recipe="pipelines/ssnet_paper_cpu.yaml")
        self.precision = self.synthesis.precision
        self.matcher = get_matcher("ccnet", scale=scale, search_range=chosen.search_range, device=str(self.device),
                                   weights=chosen.ccnet_weights, precision=self.precision,
                                   aggregate=chosen.aggregate)

    @classmethod
    def networks(cls, options: RefSRPaperOptions) -> dict[str, str]:
        return {**SynthesisNetworks.names(options, "ssnet_paper"), "ccnet": str(options.ccnet_weights or "ccnet")}

    @torch.inference_mode()
    def prepare(self, ref: torch.Tensor) -> MatchContext:
        """Per-reference work, once per light field or reference frame: CC-Net's dense reference features."""
        ref = ref.to(self.device)
        return MatchContext(ref, self.matcher.prepare(ref))

    def direction(self, hint: ViewHint | None) -> tuple[float, float] | None:
        """Epipolar direction (dx, dy) of a light-field view: the flow to the reference is d * (dv, du)."""
        if not self.options.epipolar or hint is None or hint.grid_offset is None or hint.grid_offset == (0, 0):
            return None
        du, dv = hint.grid_offset
        return (float(dv), float(du))

    @torch.inference_mode()
    def super_resolve_with_mask(self, lr: torch.Tensor, context: MatchContext, hint: ViewHint | None = None):
        """-> (sr (3, H, W), M(0) (1, H, W): SS-Net's confidence in the reference, near 0 where it is ignored)."""
        from lfrefsr.synthesis import synthesize

        chosen, ssnet = self.options, self.synthesis.ssnet
        lr = lr.to(self.device)
        matches = self.matcher.match(lr, context.features, direction=self.direction(hint))
        with self.synthesis.autocast():
            lr_features = self.synthesis.lr_features(lr[None])[0]  # (Cl, h, w)
            base = self.synthesis.sisr(lr[None])[0].float().clamp(0, 1) if ssnet.residual else None  # (3, H, W)
            sr, mask = synthesize(ssnet, lr_features, context.ref, matches.flow, base, scale=self.scale,
                                  stride=chosen.stride, blend=chosen.blend, ref_patches=chosen.ref_patches,
                                  batch=chosen.batch)
        sr = sr.float()
        if chosen.back_project:
            sr = back_project(sr[None], lr[None], self.scale, chosen.back_project)[0]
        return sr.clamp(0.0, 1.0), mask.float()

    def super_resolve(self, lr: torch.Tensor, context: MatchContext, hint: ViewHint | None = None) -> torch.Tensor:
        return self.super_resolve_with_mask(lr, context, hint)[0]

    def super_resolve_with_confidence(self, lr: torch.Tensor, context: MatchContext, hint: ViewHint | None = None
                                      ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.super_resolve_with_mask(lr, context, hint)
