"""The method interface and registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lfrefsr.errors import LfrefsrError
from lfrefsr.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


@dataclass(frozen=True)
class ViewHint:
    """Where the target sits relative to its reference: grid steps (du, dv) for a light field, frame gap for video.

    Methods may use it (an epipolar search along the baseline, say); none requires it.
    """

    grid_offset: tuple[int, int] | None = None
    frame_offset: int | None = None


class Method:
    """Base class: subclasses set ``name`` and implement ``super_resolve``; ``prepare`` may cache reference work."""

    name: ClassVar[str] = ""
    uses_reference: ClassVar[bool] = True
    uses_views: ClassVar[bool] = False  # prepare(ref, views=[(hint, lr), ...]): the LR views sharing the reference
    learned: ClassVar[bool] = False  # runs trained networks: takes ``precision`` (and weights), records it
    # the LR camera's parameters it takes (``lfrefsr.capture.CaptureEstimate`` fields: psf, noise, chroma)
    camera: ClassVar[tuple[str, ...]] = ()

    def __init__(self, scale: int = 8, device: str | torch.device = "cpu", **options: Any):
        self.scale = int(scale)
        self.device = torch.device(device)
        if options:
            raise LfrefsrError(f"method {self.name!r} takes no options {sorted(options)}")

    @classmethod
    def networks(cls, options: dict | None = None) -> dict[str, str]:
        """The trained networks it loads with ``options``: role (sisr, ssnet, ccnet) -> a shipped name
        (``lfrefsr/weights/manifest.json``) or a weights file's path; {} for a classical method."""
        return {}

    def prepare(self, ref: torch.Tensor) -> Any:
        """Per-reference work (3, H, W) -> context passed to every ``super_resolve`` of that reference."""
        return ref.to(self.device)

    def super_resolve(self, lr: torch.Tensor, context: Any, hint: ViewHint | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, lr: torch.Tensor, ref: torch.Tensor, hint: ViewHint | None = None) -> torch.Tensor:
        """Convenience for one pair: prepare the reference, then super-resolve."""
        return self.super_resolve(lr, self.prepare(ref), hint)


def register(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls)


def available() -> list[str]:
    return METHODS.names()


def method_class(name: str) -> type[Method]:
    return METHODS.get(name)


def get_method(name: str, **kwargs: Any) -> Method:
    return method_class(name)(**kwargs)
