"""``lfrefsr demo``: the whole chain on an embedded default, built from photographs scikit-image ships.

Writes a synthetic 8x8 light field and a short clip as image folders, ingests them into stores, reconstructs
every view and frame with each method, and prints a PSNR table against bicubic plus where everything is. The clip is
shot as a hybrid camera would: HR keyframes every ``KEYFRAME_EVERY`` frames, and each frame between them
super-resolved from the keyframes on both sides (``--reference keyframes``); its store keeps every HR frame so that
the in-between frames can be scored.
"""

from __future__ import annotations

import time
from pathlib import Path

from lfrefsr.axes import Kind
from lfrefsr.data.synthetic import make_lightfield, make_video
from lfrefsr.evaluate import score_store
from lfrefsr.io.images import write_image
from lfrefsr.io.ingest import ingest_lf, ingest_video
from lfrefsr.modes import ReferenceMode
from lfrefsr.pipeline import plan

DEMO_METHODS = ("bicubic", "flowwarp")
LIGHTFIELD = {"grid": 8, "size": (256, 256), "seed": 2017, "max_disparity": 1.5}
CLIP = {"frames": 7, "size": (256, 384), "seed": 7}
KEYFRAME_EVERY = 3  # the clip's keyframes: 0, 3, 6


def write_inputs(out: Path) -> tuple[Path, Path]:
    """The embedded default as files a user could have: view_UU_VV.png and frame_NNNN.png folders."""
    lf_dir, clip_dir = out / "inputs" / "lightfield", out / "inputs" / "clip"
    lf_dir.mkdir(parents=True, exist_ok=True)
    clip_dir.mkdir(parents=True, exist_ok=True)
    lightfield = make_lightfield(**LIGHTFIELD)["hr"]  # (u, v, 3, H, W) uint8
    for u in range(lightfield.shape[0]):
        for v in range(lightfield.shape[1]):
            write_image(lf_dir / f"view_{u:02d}_{v:02d}.png", lightfield[u, v])
    clip = make_video(**CLIP)["hr"]  # (t, 3, H, W) uint8
    for t, frame in enumerate(clip):
        write_image(clip_dir / f"frame_{t:04d}.png", frame)
    return lf_dir, clip_dir


def demo_tasks(store):
    """A light field's views from its reference; the clip's in-between frames from the keyframes around them."""
    if store.kind == Kind.VIDEO:
        return plan(store, reference_mode=ReferenceMode.KEYFRAMES, keyframe_every=KEYFRAME_EVERY)
    return plan(store)


def demo_methods() -> tuple[str, ...]:
    """The classical methods, and refsr once its networks ship with the package."""
    from lfrefsr.weights import manifest

    shipped = manifest()
    return DEMO_METHODS + (("refsr",) if {"sisr", "ssnet"} <= set(shipped) else ())


def run_demo(out: str | Path, *, device: str = "cpu", methods=None, progress: bool = True, echo=print,
             workers: int | None = None) -> dict:
    """ingest -> reconstruct (dask LocalCluster) -> encode, then a PSNR table against bicubic."""
    from lfrefsr.distributed import open_client, run_distributed
    from lfrefsr.encode import encode

    out = Path(out)
    methods = tuple(methods or demo_methods())
    started = time.perf_counter()
    lf_dir, clip_dir = write_inputs(out)
    stores = [
        ingest_lf(lf_dir, out / "lightfield.zarr", overwrite=True, progress=progress),
        ingest_video(clip_dir, out / "clip.zarr", overwrite=True, progress=progress),
    ]
    scores: dict = {}
    with open_client(workers=workers, gpu=device == "cuda") as client:  # one LocalCluster for the whole demo
        for method in methods:  # one graph per method over both stores
            tasks = [task for store in stores for task in demo_tasks(store)]
            summary = run_distributed(tasks, method, device=device, progress=progress, client=client)
            if summary.failed:
                label, reason = summary.failed[0]
                raise RuntimeError(f"demo: {method} failed on {label}: {reason}")
            for store in stores:
                scores[(store.path.name, method)] = (score_store(store, method, demo_tasks(store))["psnr_rgb"],
                                                     summary)
    best = methods[-1]
    outputs = [
        encode(stores[0].path, out / "lightfield_sweep.mp4", what="sweep", method=best, overwrite=True),
        encode(stores[0].path, out / "lightfield_grid", what="grid", method=best, overwrite=True),
        encode(stores[1].path, out / "clip.mp4", what="clip", method=best, overwrite=True),
    ]
    echo("")
    echo(f"{'store':<18} {'method':<10} {'PSNR RGB':>9} {'vs bicubic':>11}")
    for (name, method), (psnr, _) in scores.items():
        gain = psnr - scores[(name, "bicubic")][0]
        echo(f"{name:<18} {method:<10} {psnr:>9.2f} {gain:>+11.2f}")
    echo("")
    echo(f"clip   : HR keyframes every {KEYFRAME_EVERY} frames; the frames between them from the keyframes on both "
         "sides (--reference keyframes)")
    echo(f"inputs : {lf_dir}  {clip_dir}")
    echo(f"stores : {'  '.join(str(s.path) for s in stores)}   (results under sr/<method>; `lfrefsr info STORE`)")
    echo(f"encoded: {'  '.join(str(p) for p in outputs)}   ({best})")
    echo(f"total  : {time.perf_counter() - started:.1f} s")
    return {key: value[0] for key, value in scores.items()}
