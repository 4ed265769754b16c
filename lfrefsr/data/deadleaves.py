"""Dead-leaves images: random opaque ellipses stacked until they cover the canvas, with sizes drawn from a power law.

Why: the photographs bundled or configured for training are a few dozen, most of them texture (Urban100's facades,
scikit-image's grass and gravel). Dead leaves have the statistics natural images share (occlusion edges at every
scale, a scale-invariant spectrum, Matheron's model) and none of any one photograph's content, so a network trained
on both sees sharp edges between flat, shaded or textured regions far more often than the photographs alone show
them (the shape of rendered scenes such as Sintel's). Each leaf is a flat colour drawn from a photograph's pixels,
shaded by a linear ramp, or (``textured``) a crop of a photograph at its own scale. Edges are antialiased by
rendering at ``supersample`` times the size and averaging.
"""

from __future__ import annotations

import numpy as np
import torch


def _power_law(rng: np.random.Generator, low: float, high: float, alpha: float) -> float:
    """One radius from p(r) ~ r^-alpha on [low, high] (inverse CDF; alpha != 1)."""
    a, b = low ** (1 - alpha), high ** (1 - alpha)
    return float((a + rng.random() * (b - a)) ** (1 / (1 - alpha)))


def dead_leaves(size: int, rng: np.random.Generator, photos: list[torch.Tensor], *,
                radius: tuple[float, float] = (4.0, 0.6), alpha: float = 2.0, textured: float = 0.3,
                supersample: int = 3, max_leaves: int = 20000) -> torch.Tensor:
    """One dead-leaves image (3, size, size) in [0, 1].

    ``photos``: (3, H, W) tensors the leaves' colours (and textures) come from. ``radius``: the smallest leaf's
    semi-axis in pixels and the largest's as a fraction of ``size``; ``alpha``: the power law's exponent (3 is
    Matheron's scale-invariant model, whose canvas is mostly leaves of a few pixels; 2 leaves the large flat and
    shaded regions rendered scenes have). Leaves are drawn front to back, each covering what no leaf in front of it
    covers, until the canvas is covered or ``max_leaves`` were drawn (what is left takes one more colour)."""
    big = size * supersample
    canvas = np.zeros((big, big, 3), np.float32)  # (Hs, Ws, 3)
    filled = np.zeros((big, big), bool)
    low, high = radius[0] * supersample, max(radius[0] * 2, radius[1] * size) * supersample
    arrays = [photo.permute(1, 2, 0).numpy() for photo in photos]  # each (H, W, 3)

    def colour() -> np.ndarray:
        photo = arrays[int(rng.integers(len(arrays)))]
        return photo[int(rng.integers(photo.shape[0])), int(rng.integers(photo.shape[1]))]  # (3,)

    for _ in range(max_leaves):
        r = _power_law(rng, low, high, alpha)
        aspect = rng.uniform(0.4, 1.0)
        angle = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(-r, big + r, 2)
        y0, y1 = max(0, int(cy - r)), min(big, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(big, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy  # (h, 1)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx  # (1, w)
        along = (dx * np.cos(angle) + dy * np.sin(angle)) / r
        across = (-dx * np.sin(angle) + dy * np.cos(angle)) / (r * aspect)
        inside = (along**2 + across**2 <= 1) & ~filled[y0:y1, x0:x1]  # (h, w)
        if not inside.any():
            continue
        if rng.random() < textured:  # a photograph's crop at its own scale (upsampled by the supersampling)
            photo = arrays[int(rng.integers(len(arrays)))]
            h, w = -(-(y1 - y0) // supersample), -(-(x1 - x0) // supersample)
            if photo.shape[0] <= h or photo.shape[1] <= w:
                continue
            ty, tx = int(rng.integers(photo.shape[0] - h)), int(rng.integers(photo.shape[1] - w))
            crop = photo[ty : ty + h, tx : tx + w].repeat(supersample, 0).repeat(supersample, 1)  # (h*s, w*s, 3)
            paint = crop[: y1 - y0, : x1 - x0]
        else:  # a flat colour shaded by a linear ramp across the leaf
            ramp = rng.normal(0, 0.1, 2).astype(np.float32)
            paint = colour() + (along[..., None] * ramp[0] + across[..., None] * ramp[1])  # (h, w, 3)
            paint = np.broadcast_to(paint, (y1 - y0, x1 - x0, 3))
        canvas[y0:y1, x0:x1][inside] = paint[inside]
        filled[y0:y1, x0:x1] |= inside
        if filled.all():
            break
    canvas[~filled] = colour()
    image = canvas.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))  # (H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).clamp(0, 1)  # (3, H, W)
