"""``refsr``: RefSR-Net = CC-Net correspondences + SS-Net synthesis (with the frozen SRResNet + NN LR features).

Variants:
    default  the CPU-trained networks; every LR pixel's match warps the reference (``ref_patches="warp"``),
             non-overlapping patches (``stride=8``) blended with the Gaussian-smoothed masks, and for light fields
             an epipolar 1-D search along the view's baseline.
    paper    the paper's synthesis: one displacement per patch from its centre's match (``shift``), patches every
             LR pixel (``stride=1``), mask-weighted blending, full 2-D search.
Any option may also be given on its own (``stride=4`` is a faster/denser middle ground).
"""

from __future__ import annotations

import torch

from lfrefsr.methods.base import Method, ViewHint, register

VARIANTS = {
    "default": {"stride": 8, "blend": "mask", "ref_patches": "warp", "epipolar": True},
    "paper": {"stride": 1, "blend": "mask", "ref_patches": "shift", "epipolar": False},
}


@register
class RefSR(Method):
    name = "refsr"

    def __init__(self, scale: int = 8, device="cpu", *, variant: str = "default", stride: int | None = None,
                 blend: str | None = None, ref_patches: str | None = None, epipolar: bool | None = None,
                 search_range: int = 100, ccnet_weights=None, sisr_weights=None, ssnet_weights=None,
                 precision: str = "fp32", batch: int = 64):
        super().__init__(scale, device)
        from lfrefsr.correspondence.matchers import get_matcher
        from lfrefsr.weights import load_network

        if variant not in VARIANTS:
            raise ValueError(f"variant is one of {sorted(VARIANTS)}")
        chosen = {**VARIANTS[variant], **{k: v for k, v in
                  {"stride": stride, "blend": blend, "ref_patches": ref_patches, "epipolar": epipolar}.items()
                  if v is not None}}
        self.stride, self.blend, self.precision = int(chosen["stride"]), chosen["blend"], precision
        self.ref_patches, self.epipolar, self.batch = chosen["ref_patches"], bool(chosen["epipolar"]), batch
        self.matcher = get_matcher("ccnet", scale=scale, search_range=search_range, device=str(self.device),
                                   weights=ccnet_weights, precision=precision)
        self.sisr, _ = load_network("sisr", sisr_weights, device=str(self.device))
        self.ssnet, _ = load_network("ssnet", ssnet_weights, device=str(self.device))
        if self.sisr.scale != scale or self.ssnet.scale != scale:
            from lfrefsr.errors import LfrefsrError

            raise LfrefsrError(f"refsr's networks are trained for x{self.ssnet.scale}, not x{scale}: "
                               "train them for this scale (lfrefsr train ... with model.scale) or use flowwarp")

    @torch.inference_mode()
    def prepare(self, ref: torch.Tensor) -> dict:
        ref = ref.to(self.device)
        return {"ref": ref, "features": self.matcher.prepare(ref)}

    def direction(self, hint: ViewHint | None):
        """Epipolar direction (dx, dy) of a light-field view: the flow to the reference is d * (dv, du)."""
        if not self.epipolar or hint is None or hint.grid_offset is None or hint.grid_offset == (0, 0):
            return None
        du, dv = hint.grid_offset
        return (float(dv), float(du))

    @torch.inference_mode()
    def super_resolve_with_mask(self, lr: torch.Tensor, context: dict, hint: ViewHint | None = None):
        """-> (sr (3, H, W), M(0) (1, H, W): SS-Net's confidence in the reference, near 0 where it is ignored)."""
        from lfrefsr.synthesis import synthesize

        lr = lr.to(self.device)
        matches = self.matcher.match(lr, context["features"], direction=self.direction(hint))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            lr_features = self.sisr.features(lr[None])[0]
            base = self.sisr(lr[None])[0].float().clamp(0, 1) if self.ssnet.residual else None
            sr, mask = synthesize(self.ssnet, lr_features, context["ref"], matches.flow, base, scale=self.scale,
                                  stride=self.stride, blend=self.blend, ref_patches=self.ref_patches,
                                  batch=self.batch)
        return sr.float().clamp(0.0, 1.0), mask.float()

    def super_resolve(self, lr: torch.Tensor, context: dict, hint: ViewHint | None = None) -> torch.Tensor:
        return self.super_resolve_with_mask(lr, context, hint)[0]
