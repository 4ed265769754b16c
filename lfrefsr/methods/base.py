"""The method interface and registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from lfrefsr.errors import LfrefsrError
from lfrefsr.methods.options import Options
from lfrefsr.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


@dataclass(frozen=True)
class ViewHint:
    """Where the target sits relative to its reference: grid steps (du, dv) for a light field, frame gap for video.

    Methods may use it (an epipolar search along the baseline, say); none requires it.
    """

    grid_offset: tuple[int, int] | None = None
    frame_offset: int | None = None  # t minus the reference's frame: negative for a reference after the target


Side = tuple[Any, ViewHint]  # one reference of a target: its ``prepare`` context and where it sits


def nearest(sides: Sequence[Side]) -> Side:
    """The side with the fewest frames (or grid steps) between reference and target; the first on a tie."""
    def distance(side: Side) -> int:
        hint = side[1]
        if hint is None:
            return 0
        if hint.frame_offset is not None:
            return abs(hint.frame_offset)
        return max(abs(d) for d in hint.grid_offset) if hint.grid_offset else 0

    return min(sides, key=distance)  # min keeps the first of equals


class Method:
    """Base class: subclasses set ``name`` and ``Options`` and implement ``super_resolve``; ``prepare`` may cache
    reference work. The options given to the constructor (keywords) become ``self.options``, an ``Options``."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options  # the options it takes, declared once (``lfrefsr.methods.options``)
    uses_reference: ClassVar[bool] = True
    uses_views: ClassVar[bool] = False  # prepare(ref, views=[(hint, lr), ...]): the LR views sharing the reference
    variants: ClassVar[dict[str, str]] = {}  # ``variant=NAME`` (``--variant``) -> the registered method that runs it
    # derived from ``Options``: it runs trained networks (takes a ``precision``), and the LR camera's parameters it
    # takes (``lfrefsr.capture.CaptureEstimate`` fields)
    learned: ClassVar[bool] = False
    camera: ClassVar[tuple[str, ...]] = ()
    # the per-pixel confidences ``super_resolve_with_confidence`` gives, by name (``reconstruct --save-confidence``)
    confidence: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.learned = cls.Options.with_flag("--precision") is not None
        cls.camera = cls.Options.camera()

    def __init__(self, scale: int = 8, device: str | torch.device = "cpu", **options: Any):
        self.scale = int(scale)
        self.device = torch.device(device)
        self.options = self.Options.build(self.name, options)

    @classmethod
    def networks(cls, options: Options) -> dict[str, str]:
        """The trained networks it loads with ``options``: role (sisr, ssnet, ccnet) -> a shipped name
        (``lfrefsr/weights/manifest.json``) or a weights file's path; {} for a classical method."""
        return {}

    def prepare(self, ref: torch.Tensor) -> Any:
        """Per-reference work (3, H, W) -> context passed to every ``super_resolve`` of that reference."""
        return ref.to(self.device)

    def super_resolve(self, lr: torch.Tensor, context: Any, hint: ViewHint | None = None) -> torch.Tensor:
        raise NotImplementedError

    def super_resolve_with_confidence(self, lr: torch.Tensor, context: Any, hint: ViewHint | None = None
                                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (sr (3, H, W), confidences (K, H, W) in [0, 1], one per name in ``confidence``)."""
        raise LfrefsrError(f"method {self.name!r} gives no confidence")

    def super_resolve_sides(self, lr: torch.Tensor, sides: Sequence[Side]) -> torch.Tensor:
        """A frame between two references (a hybrid video's HR keyframes before and after it), each side a
        ``(context, hint)`` -> sr (3, H, W). A method that uses one reference takes the nearer one (the fewer
        frames of motion; the earlier on a tie); ``refsr`` and ``flowwarp`` fuse both."""
        return self.super_resolve(lr, *nearest(sides))

    def super_resolve_sides_with_confidence(self, lr: torch.Tensor, sides: Sequence[Side]
                                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """``super_resolve_sides`` with the confidences of ``super_resolve_with_confidence``."""
        return self.super_resolve_with_confidence(lr, *nearest(sides))

    def __call__(self, lr: torch.Tensor, ref: torch.Tensor, hint: ViewHint | None = None) -> torch.Tensor:
        """Convenience for one pair: prepare the reference, then super-resolve."""
        return self.super_resolve(lr, self.prepare(ref), hint)


def register(cls: type[Method]) -> type[Method]:
    return METHODS.register(cls)


def available() -> list[str]:
    return METHODS.names()


def resolve(name: str, options: Mapping[str, Any] | None = None) -> tuple[type[Method], dict[str, Any]]:
    """(the class that runs method ``name`` with ``options``, the options it takes): a ``variant`` option names
    another registered method (``refsr`` with ``variant="paper"`` runs ``refsr_paper``)."""
    cls = METHODS.get(name)
    options = dict(options or {})
    variant = options.pop("variant", None)
    if variant is not None:
        if variant not in cls.variants:
            known = f"its variants are {sorted(cls.variants)}" if cls.variants else "it has no variants"
            raise LfrefsrError(f"method {name!r} has no variant {variant!r}: {known}")
        cls = METHODS.get(cls.variants[variant])
    return cls, options


def method_class(name: str, options: Mapping[str, Any] | None = None) -> type[Method]:
    return resolve(name, options)[0]


def typed_options(name: str, options: Mapping[str, Any] | None = None) -> Options:
    """The typed options method ``name`` runs with, given ``options`` (a mapping, as the pipeline carries them)."""
    cls, options = resolve(name, options)
    return cls.Options.build(name, options)


def network_names(name: str, options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The trained networks method ``name`` loads with ``options``: role -> shipped name or weights path."""
    cls = method_class(name, options)
    return cls.networks(typed_options(name, options))


def get_method(name: str, *, scale: int = 8, device: str | torch.device = "cpu", **options: Any) -> Method:
    cls, options = resolve(name, options)
    return cls(scale, device, **options)
