"""Benchmark: flowwarp's sensitivity to its DIS settings and back-projection steps, on every dev set and on synthetic
light fields, clean or under a degradation (the capture's estimate of the LR camera in use, as ``eval --degrade``).

Each row is one setting (DIS preset, patch side, back-projection steps); each column one set's mean RGB PSNR over its
views or frames; the last the mean over sets, each weighted equally. ``flowwarp``'s ``default`` preset takes the best
row (``lfrefsr.methods.flowwarp.CLEAN_DIS`` and ``NOISY_DIS``); benchmarks/README.md holds the tables.

    python benchmarks/dis_sensitivity.py [--degrade noise=3,jpeg=85] [--data ../shared/data] [--json out.json]
        [--blur 0,2,3,4] [--only fast/12/1]

``--blur``: DIS's extra pre-blur (``dis_blur``, HR pixels) as a further axis; ``--only``: those rows alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from lfrefsr import capture, metrics, protocol
from lfrefsr.data.synthetic import make_lightfield
from lfrefsr.evaluate import degrade_store
from lfrefsr.io.ingest import ingest_lf, ingest_video
from lfrefsr.methods.flowwarp import FlowWarp
from lfrefsr.protocol import Degradation

SETTINGS = [(preset, patch, steps) for preset in ("ultrafast", "fast", "medium") for patch in (8, 12, 16)
            for steps in (1, 10)]
VIEWS_PER_SET = 12  # light field: every fifth view of the 63; video: every frame (at most 12)


def real_sets(data: Path, degradation: Degradation | None, tmp: Path) -> dict:
    """name -> (camera options, [(lr, ref, hr)]) for the dev sets found under ``data``."""
    sources = {"hci-backgammon": ("lf", data / "lightfields/hci-backgammon"),
               "alley_1 clean": ("video", data / "video/sintel-alley_1/clean"),
               "alley_1 final": ("video", data / "video/sintel-alley_1/final"),
               "seq-0016-0025": ("video", data / "video/sintel-seq-0016-0025")}
    sets = {}
    for name, (kind, src) in sources.items():
        if not src.is_dir():
            continue
        path = tmp / f"{len(sets)}.zarr"
        store = (ingest_lf(src, path, grid=(8, 8), progress=False) if kind == "lf"
                 else ingest_video(src, path, progress=False))
        store, estimate = degrade_store(store, degradation)
        views = store.views()
        if kind == "lf":
            targets = [v for v in views if v != tuple(store.ref)]
            pairs = [(t, tuple(store.ref)) for t in targets[:: max(1, len(targets) // VIEWS_PER_SET)][:VIEWS_PER_SET]]
        else:
            pairs = [((t,), (t - 1,)) for t in range(1, len(views))][:VIEWS_PER_SET]
        camera = {key: estimate[key] for key in ("psf", "noise")} if estimate else {}
        sets[name] = (camera, [tuple(protocol.to_float(store.read(array, index), store.dtype)
                                     for array, index in (("lr", t), ("hr", r), ("hr", t))) for t, r in pairs])
    return sets


def synthetic_sets(degradation: Degradation | None, seeds=(0, 1, 2), views: int = 8) -> dict:
    """Three synthetic 8x8 light fields of 512x512 views (disparity up to 2 px per view); the LR camera estimated
    from the reference view, as ingest does for a hybrid capture."""
    sets = {}
    for seed in seeds:
        hr = make_lightfield(grid=8, size=(512, 512), seed=seed, max_disparity=2.0)["hr"]  # (8, 8, 3, H, W) uint8
        targets = [(u, v) for u in range(8) for v in range(8) if (u, v) != (0, 0)][:: 63 // views][:views]
        hrs = [hr[0, 0]] + [hr[u, v] for u, v in targets]
        lrs = degradation.lr_views(hrs, 8) if degradation else [protocol.make_lr(h, 8) for h in hrs]
        camera = {}
        if degradation:
            found = capture.estimate([protocol.to_float(hrs[0])], [protocol.to_float(lrs[0])], 8)
            camera = {"psf": found.psf, "noise": found.noise}
        ref = protocol.to_float(hrs[0])
        sets[f"synthetic {seed}"] = (camera, [(protocol.to_float(lr), ref, protocol.to_float(h))
                                              for lr, h in zip(lrs[1:], hrs[1:], strict=True)])
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrade", default=None, help="a --degrade SPEC for the LR views (default: clean)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--blur", default="0", help="comma-separated DIS pre-blurs in HR pixels (default: 0)")
    parser.add_argument("--only", default=None, help="comma-separated PRESET/PATCH/STEPS rows (default: all)")
    args = parser.parse_args()
    degradation = Degradation.parse(args.degrade) if args.degrade else None
    blurs = [float(b) for b in args.blur.split(",")]
    settings = SETTINGS if args.only is None else [
        (preset, int(patch), int(steps)) for preset, patch, steps in (row.split("/") for row in args.only.split(","))]
    with tempfile.TemporaryDirectory(prefix="lfrefsr-dis-") as tmp:
        sets = {**real_sets(args.data, degradation, Path(tmp)), **synthetic_sets(degradation)}
    print("| DIS preset / patch / back-projection steps / pre-blur | " + " | ".join(sets) + " | mean |")
    rows = []
    for (preset, patch, steps), blur in ((setting, blur) for setting in settings for blur in blurs):
        scores = {}
        for name, (camera, items) in sets.items():
            flowwarp = FlowWarp(8, preset=preset, patch=patch, iterations=steps, dis_blur=blur, **camera)
            scores[name] = float(np.mean([metrics.psnr(flowwarp(lr, ref), hr) for lr, ref, hr in items]))
        mean = float(np.mean(list(scores.values())))
        rows.append({"preset": preset, "patch": patch, "steps": steps, "blur": blur, "psnr_rgb": scores,
                     "mean": mean})
        print(f"| {preset} / {patch} / {steps} / {blur:g} | " + " | ".join(f"{v:.2f}" for v in scores.values())
              + f" | {mean:.2f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"degrade": args.degrade, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
