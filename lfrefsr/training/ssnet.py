"""Training SS-Net (paper section 5.2): patches of synthetic pairs with correspondences precomputed by CC-Net.

As the paper does, the expensive parts are amortised: a pool of prepared pairs (LR features of the frozen SRResNet,
its SR output as the residual base, CC-Net matches and the reference patches they select) is refreshed one pair every
``refresh_every`` steps, and each step samples a batch of p x p LR patches from the pool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lfrefsr import capture, protocol
from lfrefsr.capability import autocast, effective_precision
from lfrefsr.correspondence.matchers import get_matcher
from lfrefsr.methods.flowwarp import FlowWarp
from lfrefsr.methods.refsr import (
    RefSROptions,
    align_reference,
    flow_guide,
    prepare_ccnet,
    protocol_camera,
    protocol_view,
)
from lfrefsr.synthesis import dense_flow
from lfrefsr.training.ccnet import degrade
from lfrefsr.training.common import initial_model, save_checkpoint, train_loop
from lfrefsr.training.pairs import PairConfig, load_training_photos, sample_pair
from lfrefsr.warp import warp


def smooth_flow_error(rng: np.random.Generator, size: tuple[int, int], rms: float, cell: int = 32) -> torch.Tensor:
    """A smooth random flow error (2, H, W): normal values on a grid of ``cell``-pixel cells, bicubic upsampled, scaled
    by an rms drawn from [0, ``rms``] so that some pairs stay exact."""
    height, width = size
    coarse = torch.from_numpy(rng.standard_normal((1, 2, height // cell + 2, width // cell + 2))).float()
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]  # (2, H, W)
    return field / field.pow(2).mean().sqrt().clamp_min(1e-6) * float(rng.uniform(0, rms))


def random_degradation(rng: np.random.Generator, config: dict | None) -> protocol.Degradation | None:
    """A real LR camera drawn at random (``train.degrade``), or None for the protocol's clean LR view.

    config keys: ``clean`` (probability of no degradation), ``psf`` ([low, high] Gaussian sigma in LR pixels, drawn
    uniformly; 0 half the time), ``noise`` ([low, high] sigma in 1/255), ``jpeg`` ([low, high] quality, applied with
    probability ``jpeg_p``). Codecs, lenses and sensors vary independently, so each part is drawn on its own."""
    if not config or rng.random() < float(config.get("clean", 0.0)):
        return None
    psf = float(rng.uniform(*config["psf"])) if rng.random() < 0.5 else 0.0
    noise = float(rng.uniform(*config["noise"]))
    jpeg = int(rng.integers(config["jpeg"][0], config["jpeg"][1] + 1)) if rng.random() < float(
        config.get("jpeg_p", 0.5)) else None
    return protocol.Degradation(psf=round(psf, 3), noise=round(noise, 2), jpeg=jpeg, seed=int(rng.integers(2**31)))


def camera_lr(target: torch.Tensor, scale: int, degradation: protocol.Degradation | None,
              rng: np.random.Generator, noise: float = 0.0) -> tuple[torch.Tensor, capture.CaptureEstimate]:
    """HR target (3, S, S) -> (LR (1, 3, s, s) as an 8-bit camera gives it, the camera refsr would estimate): the
    camera model refsr gets at inference, estimated from the same view's HR/LR pair (``lfrefsr.capture``, its psf,
    noise and JPEG quality). Without a degradation, the protocol's LR view (``noise`` adds the old recipe's Gaussian
    noise) and the clean model."""
    if degradation is None:
        return degrade(target, scale, noise, rng), capture.CaptureEstimate(psf=0.0, gain=(1.0,) * 3, noise=0.0,
                                                                            pairs=0)
    hr = protocol.quantize(target)  # (3, S, S) uint8
    lr = protocol.to_float(degradation.lr_views([hr], scale)[0])  # (3, s, s)
    return lr[None], capture.estimate([protocol.to_float(hr)], [lr], scale)


class PairPool:
    """Prepared training pairs: everything SS-Net's inputs need, computed once per pair."""

    def __init__(self, config: dict, photos, rng: np.random.Generator):
        self.pair_cfg = PairConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["pairs"].items()})
        train = config["train"]
        from lfrefsr.weights import load_network

        self.sisr, _ = load_network("sisr", config.get("sisr_weights"))
        # "refsr": refsr's own alignment (align_reference: DIS at several patch sides, DIS MEDIUM, CC-Net's
        # candidates); "flow": the flowwarp chain's one DIS flow; "ccnet": the paper (CC-Net's matches)
        self.alignment = config.get("alignment", "ccnet")
        self.flowwarp = FlowWarp(self.pair_cfg.scale) if self.alignment in ("flow", "refsr") else None
        self.matcher = None
        if self.alignment in ("ccnet", "refsr"):
            search = int(train["search_range"]) if self.alignment == "ccnet" else RefSROptions().ccnet_search
            self.matcher = get_matcher("ccnet", scale=self.pair_cfg.scale, search_range=search,
                                       weights=config.get("ccnet_weights"))
        self.photos, self.noise = photos, float(train.get("noise", 0.0))
        self.flow_error = float(train.get("flow_error", 0.0))  # px: rms of a smooth error added to the flow
        self.degrade = train.get("degrade")  # real LR cameras (random_degradation); None: the clean protocol
        # Adam steps refining each pair's chosen flow through its camera (and codec), as refsr refines a video's
        # (``alignment: refsr`` only; the shipped recipe predates the refinement and leaves it out)
        self.refine = int(train.get("refine", 0))
        self.ref_patches = config.get("ref_patches", "warp")
        self.epipolar = bool(config.get("epipolar", True))
        self.items = [self.prepare(rng) for _ in range(int(train["pool"]))]

    @torch.no_grad()
    def prepare(self, rng: np.random.Generator) -> dict:
        scale = self.pair_cfg.scale
        pair = sample_pair(rng, self.photos, self.pair_cfg)
        lr, camera = camera_lr(pair.target, scale, random_degradation(rng, self.degrade), rng, self.noise)
        psf, noise = camera.psf, camera.noise
        ref = (pair.ref * 255).round() / 255  # (3, S, S)
        if self.flowwarp is not None:  # refsr's default variant's guide (flow_guide), from either alignment
            error = smooth_flow_error(rng, ref.shape[-2:], self.flow_error) if self.flow_error else None
            flowwarp = FlowWarp(scale, psf=psf, noise=noise) if (psf or noise) else self.flowwarp
            context = flowwarp.prepare(ref)
            if self.alignment == "refsr":
                prepare_ccnet(context, self.matcher, noise)
                aligned = align_reference(flowwarp, lr[0], context, matcher=self.matcher, flow_error=error,
                                          refine=self.refine, jpeg=camera.jpeg)
            else:
                aligned = flowwarp.align(lr[0], context, error)  # each (1, C, S, S)
            # the LR features as refsr reads them: of the view as the protocol's camera would have given it, for any
            # other camera (RefSR._lr_features)
            seen = lr if protocol_camera(psf, noise) else protocol_view(lr, aligned["result"], scale, psf, noise)
            return {"lr_features": self.sisr.features(seen)[0], "base": aligned["result"][0], "hr": pair.target,
                    "ref": flow_guide(aligned)}  # guide (7, S, S)
        lr_features = self.sisr.features(lr)[0]
        direction = pair.direction if self.epipolar else None  # as refsr searches light fields at inference
        matches = self.matcher.match(lr[0], self.matcher.prepare(ref), direction=direction)
        flow = matches.flow.float()  # (2, h, w)
        if self.ref_patches == "warp":
            aligned = warp(ref[None], dense_flow(flow, scale, ref.shape[-2:])[None])[0]  # (3, S, S)
        else:
            aligned = ref
        return {"lr_features": lr_features, "base": self.sisr(lr)[0].clamp(0, 1), "hr": pair.target,
                "ref": aligned, "flow": flow.round().long()}

    def refresh(self, rng: np.random.Generator) -> None:
        self.items[int(rng.integers(len(self.items)))] = self.prepare(rng)

    def batch(self, rng: np.random.Generator, count: int, patch: int):
        """count random patches: LR features (B, Cl, p, p), reference (B, 3, P, P), base, HR target."""
        scale = self.pair_cfg.scale
        big = patch * scale
        lr_features, refs, bases, hrs = [], [], [], []
        for _ in range(count):
            item = self.items[int(rng.integers(len(self.items)))]
            h, w = item["lr_features"].shape[1:]
            i, j = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
            y, x = i * scale, j * scale
            lr_features.append(item["lr_features"][:, i : i + patch, j : j + patch])
            bases.append(item["base"][:, y : y + big, x : x + big])
            hrs.append(item["hr"][:, y : y + big, x : x + big])
            if self.flowwarp is not None or self.ref_patches == "warp":
                refs.append(item["ref"][:, y : y + big, x : x + big])
            else:  # the paper: one displacement per patch, from its centre LR pixel's match
                dx, dy = (int(v) for v in item["flow"][:, i + patch // 2, j + patch // 2])
                padded = F.pad(item["ref"][None], (big, big, big, big), mode="replicate")[0]
                refs.append(padded[:, y + dy + big : y + dy + 2 * big, x + dx + big : x + dx + 2 * big])
        return torch.stack(lr_features), torch.stack(refs), torch.stack(bases), torch.stack(hrs)


def weights_record(config: dict) -> dict:
    """What the weights file records of ``config`` besides the tensors and ``meta``: the model and how refsr must
    prepare its inputs (``synthesis``)."""
    return {"model_config": config["model"],
            "synthesis": {k: config[k] for k in ("alignment", "ref_patches", "blend") if k in config}}


def train_ssnet(config: dict, out: str | Path, *, resume: bool = False, progress: bool = True,
                max_steps: int | None = None, device: str = "cpu") -> Path:
    """Train from ``config`` into ``out``; the pool of prepared pairs (OpenCV's DIS, the frozen networks) is built on
    the CPU, and each step's batch runs on ``device``."""
    train_cfg = config["train"]
    model = initial_model(config)
    photos = load_training_photos([p for p in config["pairs"]["photos"] if p == "skimage" or Path(p).is_dir()])
    pool: PairPool | None = None
    patch, batch = int(train_cfg.get("patch", 8)), int(train_cfg["batch"])
    precision = effective_precision(train_cfg.get("precision", "fp32"), device)  # bf16 only where native
    refresh_every = int(train_cfg.get("refresh_every", 4))
    counter = {"step": 0}

    def step(rng: np.random.Generator):
        nonlocal pool
        if pool is None:  # built from the (possibly resumed) generator, so a resumed run continues the stream
            pool = PairPool(config, photos, rng)
        counter["step"] += 1
        if counter["step"] % refresh_every == 0:
            pool.refresh(rng)
        lr_features, refs, bases, hrs = (part.to(device) for part in pool.batch(rng, batch, patch))
        with autocast(device, precision):
            sr, _ = model(lr_features, refs, bases if model.residual else None)
        loss = F.l1_loss(sr.float(), hrs)
        with torch.no_grad():
            psnr = 10 * torch.log10(1 / F.mse_loss(sr.float().clamp(0, 1), hrs))
            psnr_base = 10 * torch.log10(1 / F.mse_loss(bases, hrs))
        return loss, {"psnr": float(psnr), "gain": float(psnr - psnr_base)}

    def export(path, **meta):
        save_checkpoint(path, **weights_record(config), state_dict=model.state_dict(),
                        meta={k: float(v) for k, v in meta.items()})

    return train_loop(config, out, model, step, name="ssnet", resume=resume, progress=progress,
                      max_steps=max_steps, export=export, device=device)
