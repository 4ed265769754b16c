"""Pre-training SRResNet + NN for single-image SR (its body becomes SS-Net's frozen LR feature extractor).

Data: random crops of real photographs (scikit-image's and any configured folder), optionally resized first by a
random factor (``train.rescale``), and a share of each batch (``train.dead_leaves``) from dead-leaves images whose
colours and textures come from those photographs (``lfrefsr.data.deadleaves``); random flips and 90-degree
rotations, an HR offset of 0..scale-1 before the protocol's down-sampling, 8-bit LR. L1 loss, or the squared error
(``train.loss: mse``), whose minimiser is the mean of what an LR patch may hide rather than its median.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.capability import autocast, effective_precision
from lfrefsr.data.deadleaves import dead_leaves
from lfrefsr.errors import LfrefsrError
from lfrefsr.training.common import initial_model, save_checkpoint, train_loop
from lfrefsr.training.pairs import load_training_photos

# SISR's training losses (``train.loss``)
LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}


def random_crops(rng: np.random.Generator, photos: list[torch.Tensor], count: int, size: int,
                 rescale: tuple[float, float] | None = None) -> torch.Tensor:
    """(count, 3, size, size) random crops (photos smaller than ``size`` are upscaled first), flipped and rotated.
    ``rescale`` (low, high): each photo is first resized (antialiased) by a factor drawn from that range, never below
    ``size``, so a few dozen photographs show their content at many scales; None draws nothing more."""
    crops = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        if rescale is not None:
            factor = max(float(rng.uniform(*rescale)), (size + 1) / min(photo.shape[1:]))
            if factor < 1:
                photo = F.interpolate(photo[None], scale_factor=factor, mode="bicubic", antialias=True,
                                      align_corners=False)[0]
        if min(photo.shape[1:]) < size:
            factor = size / min(photo.shape[1:]) + 1e-3
            photo = F.interpolate(photo[None], scale_factor=factor, mode="bicubic", align_corners=False)[0]
        y0 = int(rng.integers(photo.shape[1] - size + 1))
        x0 = int(rng.integers(photo.shape[2] - size + 1))
        crop = photo[:, y0 : y0 + size, x0 : x0 + size]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        crops.append(torch.rot90(crop, int(rng.integers(4)), dims=(-2, -1)))
    return torch.stack(crops).clamp(0, 1)


def leaf_pool(settings: dict | None, photos: list[torch.Tensor], crop: int, batch: int,
              seed: int) -> tuple[list[torch.Tensor], int]:
    """``train.dead_leaves`` (``fraction``: the share of each batch, ``images``: the pool's size, ``size``: their
    side, at least ``crop``; ``striped``, ``duty``: ``dead_leaves``'s gratings) -> (the dead-leaves images, drawn
    once from their own seed so that a resumed run has the same pool, and the crops per batch they give). None: no
    pool, no crops."""
    if not settings:
        return [], 0
    rng = np.random.default_rng([seed, 1])
    size = max(int(settings.get("size", 256)), crop)
    stripes = {"striped": float(settings.get("striped", 0.0)), "duty": tuple(settings.get("duty", (0.5, 0.5)))}
    pool = [dead_leaves(size, rng, photos, **stripes) for _ in range(int(settings.get("images", 512)))]
    return pool, round(float(settings["fraction"]) * batch)


def weights_record(config: dict) -> dict:
    """What the weights file records of ``config`` besides the tensors and ``meta``."""
    return {"model_config": config["model"]}


def train_sisr(config: dict, out: str | Path, *, resume: bool = False, progress: bool = True,
               max_steps: int | None = None, device: str = "cpu") -> Path:
    train_cfg = config["train"]
    loss_name = train_cfg.get("loss", "l1")
    if loss_name not in LOSSES:
        raise LfrefsrError(f"train.loss={loss_name!r}: one of {', '.join(LOSSES)}")
    model = initial_model(config)
    scale = int(config["model"]["scale"])
    photos = load_training_photos([p for p in config["photos"] if p == "skimage" or Path(p).is_dir()])
    patch, batch = int(train_cfg["patch"]), int(train_cfg["batch"])
    precision = effective_precision(train_cfg.get("precision", "fp32"), device)  # bf16 only where native
    rescale = tuple(train_cfg["rescale"]) if train_cfg.get("rescale") else None
    leaves, leaf_crops = leaf_pool(train_cfg.get("dead_leaves"), photos, patch * scale, batch, int(train_cfg["seed"]))

    def step(rng: np.random.Generator):
        hr = random_crops(rng, photos, batch - leaf_crops, patch * scale, rescale)  # (B - L, 3, P*s, P*s)
        if leaf_crops:
            hr = torch.cat([hr, random_crops(rng, leaves, leaf_crops, patch * scale)])  # (B, 3, P*s, P*s)
        hr = hr.to(device)
        lr = (protocol.downsample(hr, scale) * 255).round() / 255  # 8-bit LR as stored
        with autocast(device, precision):
            sr = model(lr)
        loss = LOSSES[loss_name](sr.float(), hr)
        with torch.no_grad():
            mse = F.mse_loss(sr.float().clamp(0, 1), hr)
        return loss, {"psnr": float(10 * torch.log10(1 / mse))}

    def export(path, **meta):
        save_checkpoint(path, **weights_record(config), state_dict=model.state_dict(),
                        meta={k: float(v) for k, v in meta.items()})

    return train_loop(config, out, model, step, name="sisr", resume=resume, progress=progress,
                      max_steps=max_steps, export=export, device=device)
