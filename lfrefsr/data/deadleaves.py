"""Dead-leaves images: random opaque ellipses stacked until they cover the canvas, with sizes drawn from a power law.

Why: the photographs bundled or configured for training are a few dozen, most of them texture (Urban100's facades,
scikit-image's grass and gravel). Dead leaves have the statistics natural images share (occlusion edges at every
scale, a scale-invariant spectrum, Matheron's model) and none of any one photograph's content, so a network trained
on both sees sharp edges between flat, shaded or textured regions far more often than the photographs alone show
them (the shape of rendered scenes such as Sintel's). Each leaf is a flat colour drawn from a photograph's pixels,
shaded by a linear ramp, or (``textured``) a crop of a photograph at its own scale, or (``striped``) a grating of two
such colours at a random angle and period, down to finer than an x8 LR view resolves. Edges are antialiased by
rendering at ``supersample`` times the size and averaging.

Why the gratings (``striped``, off by default): SRResNet + NN continued on photographs and flat leaves learned to
draw hci-backgammon's striped board, whose bands an x8 LR view barely resolves, as thin bright lines (RGB PSNR
24.76 -> 24.56 in 1600 steps, the loss all in the board) while Sintel gained. Gratings of any period and duty cycle
were meant to show the network which bands it cannot tell apart; they did not stop the fall, and trained longer, the
network drew gratings of its own there (pipelines/experiments/README.md, ``sisr_cpu_gratings`` and ``sisr_cpu_duty``).
"""

from __future__ import annotations

import numpy as np
import torch


def _power_law(rng: np.random.Generator, low: float, high: float, alpha: float) -> float:
    """One radius from p(r) ~ r^-alpha on [low, high] (inverse CDF; alpha != 1)."""
    a, b = low ** (1 - alpha), high ** (1 - alpha)
    return float((a + rng.random() * (b - a)) ** (1 / (1 - alpha)))


def square_wave(phase: np.ndarray, share: float) -> np.ndarray:
    """1 over the first ``share`` of each period of ``phase`` (radians), -1 over the rest."""
    return np.where(np.mod(phase / (2 * np.pi), 1.0) < share, 1.0, -1.0)


def dead_leaves(size: int, rng: np.random.Generator, photos: list[torch.Tensor], *,
                radius: tuple[float, float] = (4.0, 0.6), alpha: float = 2.0, textured: float = 0.3,
                striped: float = 0.0, period: tuple[float, float] = (6.0, 48.0),
                duty: tuple[float, float] = (0.5, 0.5), supersample: int = 3,
                max_leaves: int = 20000) -> torch.Tensor:
    """One dead-leaves image (3, size, size) in [0, 1].

    ``photos``: (3, H, W) tensors the leaves' colours (and textures) come from. ``radius``: the smallest leaf's
    semi-axis in pixels and the largest's as a fraction of ``size``; ``alpha``: the power law's exponent (3 is
    Matheron's scale-invariant model, whose canvas is mostly leaves of a few pixels; 2 leaves the large flat and
    shaded regions rendered scenes have). ``striped``: the share of leaves that are gratings, their periods (pixels)
    drawn log-uniformly from ``period``, square or sine waves alike, a square wave's duty cycle uniformly from
    ``duty`` (an LR view cannot tell a fine band's width: varied, they teach the mean of the widths). Leaves are drawn
    front to back, each covering what no leaf in front of it covers, until the canvas is covered or ``max_leaves``
    were drawn (what is left takes one more colour)."""
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
        kind = rng.random()
        if kind < striped:  # a grating of two colours across the leaf, its phase measured from the leaf's centre
            wavelength = float(np.exp(rng.uniform(*np.log(period)))) * supersample
            direction = rng.uniform(0, np.pi)
            phase = 2 * np.pi * (dx * np.cos(direction) + dy * np.sin(direction)) / wavelength  # (h, w)
            phase = phase + rng.uniform(0, 2 * np.pi)
            if rng.random() < 0.5:
                wave = np.sin(phase)
            else:
                wave = square_wave(phase, rng.uniform(*duty) if duty[0] < duty[1] else duty[0])
            first, second = colour(), colour()
            paint = first + (second - first) * (0.5 + 0.5 * wave)[..., None]  # (h, w, 3)
        elif kind < striped + textured:  # a photograph's crop at its own scale (upsampled by the supersampling)
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
