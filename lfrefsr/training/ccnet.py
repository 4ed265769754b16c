"""Training CC-Net (paper section 3, Eq. 1): classification of the true match over a search window.

Two modes, one loss (2-D softmax over the window, cross-entropy against the ground-truth position):

``dense`` (the CPU recipe): per step, feature maps are computed once per crop pair -- target features on the
8-pixel centre grid, dense reference features -- and every valid centre of the pair is a training sample, scored
against all reference positions in one matrix product with the softmax restricted to the window around the truth.

``patch`` (the paper): batches of 65-pixel target patches and 193-pixel reference patches centred on the truth,
the 129 x 129 central reference features forming the window.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr import protocol
from lfrefsr.capability import autocast, effective_precision
from lfrefsr.correspondence.inputs import lr_input, ref_input
from lfrefsr.training.common import initial_model, save_checkpoint, train_loop
from lfrefsr.training.pairs import Pair, PairConfig, load_training_photos, sample_pair

log = logging.getLogger("lfrefsr.train")


def degrade(pair_target: torch.Tensor, scale: int, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """HR (3, S, S) -> LR (1, 3, S/scale, S/scale) by the protocol, with sensor noise and 8-bit quantisation."""
    lr = protocol.downsample(pair_target[None], scale)
    if noise:
        lr = lr + noise * torch.from_numpy(rng.standard_normal(lr.shape).astype(np.float32))
    return (lr.clamp(0, 1) * 255).round() / 255


def _centre_samples(pair: Pair, scale: int, window: int):
    """Valid centres on the scale grid: (m, n) indices and the rounded true reference positions (x, y)."""
    size = pair.target.shape[-1]
    grid = torch.arange(0, size, scale)
    flow = pair.flow[:, grid][:, :, grid]  # (2, S/s, S/s)
    valid = pair.valid[grid][:, grid]  # (S/s, S/s)
    gy, gx = torch.meshgrid(grid.float(), grid.float(), indexing="ij")
    true_x, true_y = (gx + flow[0]).round(), (gy + flow[1]).round()
    inside = (true_x >= 0) & (true_x < size) & (true_y >= 0) & (true_y < size)
    shift_ok = ((true_x - gx).abs() <= window) & ((true_y - gy).abs() <= window)
    keep = valid & inside & shift_ok
    m, n = torch.nonzero(keep, as_tuple=True)
    return m, n, true_x[keep].long(), true_y[keep].long()


def dense_loss(model, pairs: list[Pair], *, scale: int, window: int, noise: float, reference_input: str,
               rng: np.random.Generator, precision: str = "fp32") -> tuple[torch.Tensor, dict]:
    """Mean cross-entropy over every valid centre of every pair, and accuracy at 0/1 px. The pairs are drawn on the
    CPU; the features and scores are computed on the model's device."""
    device = next(model.parameters()).device
    losses, hits0, hits1, count = [], 0, 0, 0
    for pair in pairs:
        size = pair.target.shape[-1]
        m, n, true_x, true_y = (index.to(device) for index in _centre_samples(pair, scale, window))
        if len(m) == 0:
            continue
        lr = degrade(pair.target, scale, noise, rng)
        ref = (pair.ref[None] * 255).round() / 255
        with autocast(device, precision):
            target_features = model.features_on_grid(lr_input(lr, scale).to(device), scale, "lr")[0]  # (C, S/s, S/s)
            ref_features = model(ref_input(ref, scale, reference_input).to(device), "ref")[0]  # (C, S, S)
        feats = target_features[:, m, n].float().T  # (N, C)
        scores = feats @ ref_features.float().reshape(ref_features.shape[0], -1)  # (N, S*S)
        ys = torch.arange(size, device=device)
        row_ok = (ys[None] - true_y[:, None]).abs() <= window  # (N, S)
        col_ok = (ys[None] - true_x[:, None]).abs() <= window  # (N, S)
        allowed = (row_ok[:, :, None] & col_ok[:, None, :]).reshape(len(m), -1)  # (N, S*S)
        scores = scores.masked_fill(~allowed, float("-inf"))
        target_index = true_y * size + true_x
        losses.append(F.cross_entropy(scores, target_index, reduction="sum"))
        with torch.no_grad():
            best = scores.argmax(-1)
            dist = torch.hypot((best % size - true_x).float(), (best // size - true_y).float())
            hits0 += int((dist <= 0).sum())
            hits1 += int((dist <= 1).sum())
            count += len(m)
    if count == 0:
        return torch.zeros((), requires_grad=True), {"n": 0, "acc0": 0.0, "acc1": 0.0}
    return torch.stack(losses).sum() / count, {"n": count, "acc0": hits0 / count, "acc1": hits1 / count}


def patch_loss(model, pairs: list[Pair], *, scale: int, batch: int, noise: float, reference_input: str,
               rng: np.random.Generator, precision: str = "fp32") -> tuple[torch.Tensor, dict]:
    """The paper's recipe: 65-px target patches, 193-px reference patches, 129 x 129 softmax, batch ``batch``."""
    lr_patches, ref_patches = [], []
    half_t, half_r = 32, 96
    for pair in pairs:
        lr_up = lr_input(degrade(pair.target, scale, noise, rng), scale)[0]  # (3, S, S)
        ref_in = ref_input((pair.ref[None] * 255).round() / 255, scale, reference_input)[0]
        m, n, true_x, true_y = _centre_samples(pair, scale, window=10**6)
        size = pair.target.shape[-1]
        ok = ((m * scale >= half_t) & (m * scale < size - half_t) & (n * scale >= half_t) & (n * scale < size - half_t)
              & (true_y >= half_r) & (true_y < size - half_r) & (true_x >= half_r) & (true_x < size - half_r))
        for k in torch.nonzero(ok)[:, 0].tolist():
            cy, cx, ry, rx = int(m[k]) * scale, int(n[k]) * scale, int(true_y[k]), int(true_x[k])
            lr_patches.append(lr_up[:, cy - half_t : cy + half_t + 1, cx - half_t : cx + half_t + 1])
            ref_patches.append(ref_in[:, ry - half_r : ry + half_r + 1, rx - half_r : rx + half_r + 1])
    if not lr_patches:
        return torch.zeros((), requires_grad=True), {"n": 0, "acc0": 0.0, "acc1": 0.0}
    device = next(model.parameters()).device
    chosen = rng.permutation(len(lr_patches))[:batch]
    lr_batch = torch.stack([lr_patches[i] for i in chosen]).to(device)  # (B, 3, 65, 65)
    ref_batch = torch.stack([ref_patches[i] for i in chosen]).to(device)  # (B, 3, 193, 193)
    with autocast(device, precision):
        f = model(lr_batch, "lr")[:, :, half_t, half_t]  # (B, C): the centre's feature
        g = model(ref_batch, "ref")[:, :, 32:161, 32:161]  # (B, C, 129, 129)
    scores = torch.einsum("bc,bchw->bhw", f.float(), g.float()).flatten(1)  # (B, 129*129)
    target_index = torch.full((len(chosen),), 64 * 129 + 64, device=device)
    loss = F.cross_entropy(scores, target_index)
    with torch.no_grad():
        best = scores.argmax(-1)
        dist = torch.hypot((best % 129 - 64).float(), (best // 129 - 64).float())
    accuracy = {"acc0": float((dist <= 0).float().mean()), "acc1": float((dist <= 1).float().mean())}
    return loss, {"n": len(chosen), **accuracy}


def train_ccnet(config: dict, out: str | Path, *, resume: bool = False, progress: bool = True,
                max_steps: int | None = None, device: str = "cpu") -> Path:
    """Train from ``config`` into ``out`` (``last.pt`` checkpoints, ``log.csv``, ``weights.pt`` at the end), the
    network on ``device``."""
    train_cfg = config["train"]
    pair_cfg = PairConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["pairs"].items()})
    model = initial_model(config)
    photos = load_training_photos([p for p in pair_cfg.photos if p == "skimage" or Path(p).is_dir()])
    mode = train_cfg.get("mode", "dense")
    common = {"scale": pair_cfg.scale, "noise": float(train_cfg.get("noise", 0.0)),
              "reference_input": config.get("reference_input", "hr"),
              "precision": effective_precision(train_cfg.get("precision", "fp32"), device)}

    def step(rng: np.random.Generator):
        pairs = [sample_pair(rng, photos, pair_cfg) for _ in range(int(train_cfg.get("pairs_per_step", 1)))]
        if mode == "dense":
            return dense_loss(model, pairs, window=int(train_cfg["window"]), rng=rng, **common)
        return patch_loss(model, pairs, batch=int(train_cfg["batch"]), rng=rng, **common)

    return train_loop(config, out, model, step, name="ccnet", resume=resume, progress=progress, max_steps=max_steps,
                      export=lambda path, **meta: export_weights(model, config, path, **meta), device=device)


def weights_record(config: dict) -> dict:
    """What the weights file records of ``config`` besides the tensors and ``meta`` (tests/test_recipes.py checks a
    shipped file's record against its recipe)."""
    return {"model_config": config["model"], "reference_input": config.get("reference_input", "hr")}


def export_weights(model, config: dict, path: Path, **meta) -> None:
    """The shippable file: model config + state dict + provenance, loadable with ``weights_only=True``."""
    save_checkpoint(path, **weights_record(config), state_dict=model.state_dict(),
                    meta={k: float(v) for k, v in meta.items()})
