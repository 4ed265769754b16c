"""What both RefSR methods (``refsr``, ``refsr_paper``) share: SISR and SS-Net loaded and checked, the LR features,
the autocast, and the options that go with them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lfrefsr.capability import autocast, effective_precision
from lfrefsr.errors import LfrefsrError
from lfrefsr.methods.options import LearnedOptions, option


@dataclass(frozen=True)
class SynthesisOptions(LearnedOptions):
    """The networks SS-Net synthesis runs on."""

    sisr_weights: str | None = option(None, "SISR (SRResNet + NN) weights file whose features SS-Net reads "
                                            "[default: the shipped sisr]")
    ssnet_weights: str | None = option(None, "SS-Net weights file [default: the method's shipped SS-Net]",
                                       flag="--weights")


class SynthesisNetworks:
    """The frozen SISR (SRResNet + NN) whose features SS-Net reads, and SS-Net, for inference.

    ``shipped``: the name of the SS-Net shipped for the method; ``guide_channels``: the HR channels its SS-Net takes
    (a file trained for the other method is refused in one line, naming the recipe that trains the right one)."""

    def __init__(self, options: SynthesisOptions, scale: int, device: torch.device, shipped: str,
                 guide_channels: int, recipe: str):
        from lfrefsr.weights import load_network

        self.device = device
        self.precision = effective_precision(options.precision, device)
        self.sisr, _ = load_network("sisr", options.sisr_weights, device=str(device))
        self.ssnet, _ = load_network("ssnet", options.ssnet_weights, device=str(device), shipped=shipped)
        found = getattr(self.ssnet, "hr_in_channels", 3)
        if found != guide_channels:
            raise LfrefsrError(f"the SS-Net weights take {found} HR channels; this method needs {guide_channels} "
                               f"(train it with {recipe})")
        if self.sisr.scale != scale or self.ssnet.scale != scale:
            raise LfrefsrError(f"the RefSR networks are trained for x{self.ssnet.scale}, not x{scale}: "
                               "train them for this scale (lfrefsr train ... with model.scale) or use flowwarp")

    @staticmethod
    def names(options: SynthesisOptions, shipped: str) -> dict[str, str]:
        """Role -> shipped name or weights path, as ``Method.networks`` reports them."""
        return {"sisr": str(options.sisr_weights or "sisr"), "ssnet": str(options.ssnet_weights or shipped)}

    def autocast(self):
        return autocast(self.device, self.precision)

    def lr_features(self, lr: torch.Tensor) -> torch.Tensor:
        """SISR's features of LR views (N, 3, h, w) -> (N, Cl, h, w), under ``autocast``."""
        return self.sisr.features(lr)
