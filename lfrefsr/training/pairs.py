"""Training pairs with exact ground truth, rendered from layered scenes of real photographs.

A pair is an HR target view and an HR reference view of one scene, with the flow from target to reference and where
it is valid (not occluded, inside the reference). Light-field pairs differ by parallax between two grid positions;
video pairs by per-layer affine motion between two frames. The paper's augmentation is applied: rotations by
multiples of 90 degrees and an HR offset of 0..scale-1 pixels before down-sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lfrefsr.data.photos import load_photos
from lfrefsr.data.synthetic import LayeredScene


@dataclass(frozen=True)
class PairConfig:
    size: int = 192  # HR crop side, a multiple of ``scale``
    scale: int = 8
    lf_fraction: float = 0.6  # share of light-field pairs (the rest are video pairs)
    grid: int = 8  # light-field grid side: the largest grid offset is grid - 1
    max_disparity: float = 3.0  # pixels per grid step
    motion: float = 1.5  # video: 1.0 ~ 3 px/frame per layer
    max_frame_gap: int = 4
    brightness: float = 0.1
    slant: float = 0.0  # light field: per-layer disparity change across the crop, pixels per grid step
    repeat: float = 0.0  # probability of a periodic (tiled) layer texture
    thin: float = 0.0  # probability that a foreground layer is a thin bar or wedge
    comb: float = 0.0  # probability that a thin layer is a comb of parallel teeth
    photos: tuple = ("skimage",)
    extra: dict = field(default_factory=dict)


@dataclass
class Pair:
    target: torch.Tensor  # (3, S, S) HR target, float in [0, 1]
    ref: torch.Tensor  # (3, S, S) HR reference
    flow: torch.Tensor  # (2, S, S) target -> reference, channel 0 = x
    valid: torch.Tensor  # (S, S) bool
    direction: tuple[float, float] | None = None  # light field: the epipolar line (dx, dy) the flow lies on


def load_training_photos(sources) -> list[torch.Tensor]:
    photos = []
    for source in sources:
        photos.extend(load_photos(None if source == "skimage" else source))
    return photos


def rot90(pair: Pair) -> Pair:
    """Rotate every part of a pair by 90 degrees: ``out[i, j] = in[j, W-1-i]`` (torch.rot90, k=1)."""
    turn = lambda x: torch.rot90(x, 1, dims=(-2, -1))  # noqa: E731
    flow = turn(pair.flow)  # vectors still in the old frame: (fx, fy) -> new (x: fy, y: -fx)
    direction = None if pair.direction is None else (pair.direction[1], -pair.direction[0])
    return Pair(turn(pair.target), turn(pair.ref), torch.stack([flow[1], -flow[0]]), turn(pair.valid), direction)


def sample_pair(rng: np.random.Generator, photos: list[torch.Tensor], cfg: PairConfig) -> Pair:
    size, scale = cfg.size, cfg.scale
    full = size + scale  # room for the HR offset
    lightfield = rng.random() < cfg.lf_fraction
    scene = LayeredScene(
        full, full, photos=photos, max_disparity=cfg.max_disparity if lightfield else 0.0,
        motion=0.0 if lightfield else cfg.motion, brightness=cfg.brightness, seed=int(rng.integers(2**31)),
        slant=cfg.slant if lightfield else 0.0, repeat=cfg.repeat, thin=cfg.thin, comb=cfg.comb,
    )
    if lightfield:
        ref_view = (0, *rng.integers(0, cfg.grid, 2))
        target_view = ref_view
        while target_view == ref_view:
            target_view = (0, *rng.integers(0, cfg.grid, 2))
    else:
        gap = int(rng.integers(1, cfg.max_frame_gap + 1)) * (1 if rng.random() < 0.5 else -1)
        ref_view, target_view = (0, 0, 0), (gap, 0, 0)
    flow, occluded = scene.ground_truth(target_view, ref_view)
    oy, ox = (int(o) for o in rng.integers(0, scale, 2))  # HR offset before down-sampling
    crop = (slice(None), slice(oy, oy + size), slice(ox, ox + size))
    # the flow from the target to the reference lies along (dv, du) of the grid offset target - reference
    direction = (float(target_view[2] - ref_view[2]), float(target_view[1] - ref_view[1])) if lightfield else None
    pair = Pair(
        scene.render(*target_view)[crop], scene.render(*ref_view)[crop], flow[crop], ~occluded[crop[1:]], direction,
    )  # the same crop of both views keeps the flow values unchanged
    for _ in range(int(rng.integers(4))):
        pair = rot90(pair)
    return pair
