"""Bicubic upsampling: the no-reference floor every method must beat."""

from __future__ import annotations

import torch

from lfrefsr import protocol
from lfrefsr.methods.base import Method, ViewHint, register


@register
class Bicubic(Method):
    name = "bicubic"
    uses_reference = False

    def prepare(self, ref: torch.Tensor) -> None:
        return None

    def super_resolve(self, lr: torch.Tensor, context=None, hint: ViewHint | None = None) -> torch.Tensor:
        return protocol.upsample(lr.to(self.device), self.scale)
