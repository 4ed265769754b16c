"""``patchmatch``: the exemplar RefSR baseline of the paper ([2], Boominathan et al. 2014).

For every LR pixel (centre on the HR grid), the ``k`` nearest reference patches by gradient features (Chang et al.
2004) on the blurred reference are found (exactly, within the search range, on the matching engine instead of the
randomised PatchMatch search), the HR reference patches (``patch`` x ``patch`` HR pixels around each match) are
combined by non-local-means weights ``exp(-d^2 / h^2)``, and overlapping patch estimates are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.correspondence.engine import match_topk
from lfrefsr.correspondence.matchers import Gradient
from lfrefsr.methods.base import Method, ViewHint, register
from lfrefsr.methods.options import Options, option


@dataclass
class PatchContext:
    """patchmatch's per-reference work."""

    ref: torch.Tensor  # (3, H, W) the HR reference
    features: torch.Tensor  # (D, H, W) gradient features of the blurred reference (``Gradient.prepare``)
    bias: torch.Tensor  # (H, W) the matching engine's per-position bias for them


@dataclass(frozen=True)
class PatchMatchOptions(Options):
    """patchmatch's options."""

    k: int = option(4, "Reference patches combined per LR pixel")
    search_range: int = option(100, "Search range in HR pixels (2-D, +-)")
    # centres are `scale` apart: patches of twice that cover every HR pixel 4 times
    patch: int | None = option(None, "HR patch side [default: twice the scale]")


@register
class PatchMatch(Method):
    name = "patchmatch"
    Options = PatchMatchOptions

    def __init__(self, scale: int = 8, device="cpu", **options):
        super().__init__(scale, device, **options)
        self.k, self.search_range = self.options.k, self.options.search_range
        self.patch = self.options.patch or 2 * scale
        self.features = Gradient(scale=scale, search_range=self.search_range)

    def prepare(self, ref: torch.Tensor) -> PatchContext:
        ref = ref.to(self.device)
        return PatchContext(ref, *self.features.prepare(ref))

    @torch.no_grad()
    def super_resolve(self, lr: torch.Tensor, context: PatchContext, hint: ViewHint | None = None) -> torch.Tensor:
        s, size = self.scale, self.patch
        ref, feats_ref, bias = context.ref, context.features, context.bias
        target = self.features._features(protocol.upsample(lr.to(self.device), s))[:, ::s, ::s]  # (D, h, w)
        positions, scores = match_topk(2 * target, feats_ref, stride=s, k=self.k, search_range=self.search_range,
                                       ref_bias=bias)  # (k, 2, h, w), (k, h, w)
        distance = (target * target).sum(0)[None] - scores  # |f - g|^2, (k, h, w)
        bandwidth = distance[0].clamp_min(0).mean().clamp_min(1e-6)  # the typical best distance of this view
        weights = torch.softmax(-distance / bandwidth, dim=0)  # (k, h, w)
        _, rows, cols = target.shape
        half = size // 2
        padded = F.pad(ref[None], (size, size, size, size), mode="replicate")[0]
        out_h, out_w = rows * s, cols * s
        # on the reference's device, in the weighted patches' dtype (the reference's, at least float32)
        canvas = torch.zeros(3, out_h + size, out_w + size, device=ref.device,
                             dtype=torch.promote_types(ref.dtype, weights.dtype))
        count = torch.zeros(1, out_h + size, out_w + size, device=ref.device)
        offsets = torch.arange(size, device=ref.device) - half  # patch pixel offsets around the centre
        for j in range(self.k):  # gather all centres' j-th HR patch at once
            px = positions[j, 0].long()[..., None, None] + offsets[None, None, None, :] + size  # (h, w, 1, P)
            py = positions[j, 1].long()[..., None, None] + offsets[None, None, :, None] + size  # (h, w, P, 1)
            patches = padded[:, py.clamp(0, padded.shape[1] - 1), px.clamp(0, padded.shape[2] - 1)]  # (3, h, w, P, P)
            weighted = patches * weights[j][None, :, :, None, None]
            _scatter(canvas, count if j == 0 else None, weighted, s, size)
        return (canvas / count.clamp_min(1e-8))[:, half : half + out_h, half : half + out_w].clamp(0.0, 1.0)


def _scatter(canvas: torch.Tensor, count, patches: torch.Tensor, stride: int, size: int) -> None:
    """Overlap-add patches (3, h, w, P, P) centred at (stride*m, stride*n) into ``canvas`` offset by P/2."""
    _, rows, cols, _, _ = patches.shape
    for dy in range(0, size, stride):  # patches of one phase do not overlap each other: add them with one view
        for dx in range(0, size, stride):
            for m in range(rows):
                y = m * stride + dy
                block = patches[:, m, :, dy : dy + stride, dx : dx + stride]  # (3, w, s, s)
                row = block.permute(0, 2, 1, 3).reshape(3, stride, cols * stride)  # (3, s, w*s)
                canvas[:, y : y + stride, dx : dx + cols * stride] += row
                if count is not None:
                    count[:, y : y + stride, dx : dx + cols * stride] += 1
