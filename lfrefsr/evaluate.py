"""Evaluation by the x8 protocol (SPEC "Eval JSON"): ingest to a temporary store, reconstruct, score each view."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from lfrefsr import metrics, protocol
from lfrefsr.errors import LfrefsrError
from lfrefsr.io.atomic import write_text
from lfrefsr.io.ingest import ingest_lf, ingest_video
from lfrefsr.io.store import Store
from lfrefsr.methods import network_names, typed_options
from lfrefsr.pipeline import (
    ReferenceMode,
    camera_options,
    camera_settings,
    check_method,
    plan,
    run_options,
    run_serial,
)
from lfrefsr.protocol import Degradation
from lfrefsr.weights import describe


def score_store(store: Store, method: str, tasks) -> dict:
    """Per-view PSNR (RGB, Y) and SSIM (Y) of ``sr/<method>`` against ``hr``, and their means."""
    per_view = []
    for task in tasks:
        if not store.hr_known[task.target]:
            continue
        hr = protocol.to_float(store.read("hr", task.target), store.dtype)
        sr = protocol.to_float(store.read_result(method, task.target), store.dtype)
        entry = {"psnr_rgb": metrics.psnr(sr, hr), "psnr_y": metrics.psnr_y(sr, hr), "ssim_y": metrics.ssim_y(sr, hr)}
        if store.kind.value == "video":
            per_view.append({"frame": task.target[0], **entry})
        else:
            per_view.append({"view": list(task.target), **entry})
    mean = {key: float(np.mean([row[key] for row in per_view])) if per_view else float("nan")
            for key in ("psnr_rgb", "psnr_y", "ssim_y")}
    return {**mean, "per_view": per_view}


def check_methods(methods: list[str], scale: int, method_options=None) -> None:
    """Fail fast, in one line, on a method that cannot run (missing or foreign weights, a bad option), before the
    source is read."""
    for name in methods:
        check_method(name, scale, (method_options or {}).get(name))


def evaluate_store(store: Store, methods: list[str], tasks, *, device="cpu", progress=True,
                   method_options=None) -> dict:
    results = {}
    for name in methods:
        started = time.perf_counter()
        options, settings = run_options(name, (method_options or {}).get(name), device)
        summary = run_serial(tasks, name, device=device, overwrite=True, progress=progress, method_options=options)
        seconds = time.perf_counter() - started
        if summary.failed:
            label, reason = summary.failed[0]
            raise LfrefsrError(f"{name} failed on {label}: {reason}")
        scores = score_store(store, name, tasks)
        camera = camera_settings(name, store, options)  # the LR camera it modelled, where it models one
        networks = network_names(name, options)  # what it loaded
        results[name] = {**{k: v for k, v in scores.items() if k != "per_view"},
                         **settings,  # a learned method's precision: what ran, not what was asked
                         **({"camera": camera} if camera else {}),
                         **({"networks": [describe(found) for found in networks.values()]} if networks else {}),
                         # every option it ran with, defaults included (``Method.Options``)
                         "options": typed_options(name, camera_options(name, store, options)).as_json(),
                         "seconds": seconds / max(len(tasks), 1), "seconds_total": seconds,
                         "per_view": scores["per_view"]}
    return results


def temporal_consistency(store: Store, methods: list[str], tasks) -> dict:
    """The flicker of each method's result and of the HR frames (``lfrefsr.temporal``) over the consecutive scored
    frames: {"hr": entry, method: entry}, entry = {"flicker": mean, "flicker_per_pair": [{"frame": t, ...}]}."""
    from lfrefsr import temporal

    def frames(array: str) -> dict:
        """Each frame of the pairs, read once: t -> (3, H, W) float."""
        wanted = sorted({t for pair in pairs for t in pair})
        read = store.read if array == "hr" else store.read_result
        return {t: protocol.to_float(read(array, (t,)), store.dtype) for t in wanted}

    pairs = temporal.consecutive_pairs([task.target[0] for task in tasks if store.hr_known[task.target]])
    hr = frames("hr")
    flows = [temporal.pair_flow(t, hr[t], hr[t + 1]) for t, _ in pairs]
    found = {}
    for name in ["hr", *methods]:
        seen = hr if name == "hr" else frames(name)
        per_pair = [{"frame": flow.frame, "flicker": temporal.flicker(flow, seen[flow.frame], seen[flow.frame + 1])}
                    for flow in flows]
        values = [row["flicker"] for row in per_pair if np.isfinite(row["flicker"])]
        found[name] = {"flicker": float(np.mean(values)) if values else float("nan"), "flicker_per_pair": per_pair}
    return found


def degrade_store(store: Store, degradation: Degradation | None) -> tuple[Store, dict | None]:
    """Replace every LR view of an eval store (HR known everywhere) by its degraded version, in store order (the
    order of an H.264 stream), and record the degradation in the store's attributes. -> the store opened again
    (its attributes now hold the capture's estimate, which the methods that model the camera use) and that
    estimate (``lfrefsr.capture``) as recorded. Without a degradation, the store as it is and None."""
    from lfrefsr import capture

    if degradation is None:
        return store, None
    views = store.views()
    lrs = degradation.lr_views([store.read("hr", index) for index in views], store.scale)
    for index, lr in zip(views, lrs, strict=True):
        store.write("lr", index, lr)
    store.backend.update_attrs({"degrade": degradation.as_json()})
    estimate = capture.record(store)  # what the methods can know: the degradation as the capture shows it
    return Store.open(store.path), None if estimate is None else estimate.as_json()


def _degraded(result: dict, degradation: Degradation | None, estimate: dict | None) -> dict:
    """The eval JSON with the degradation that was applied and the capture's estimate of it."""
    if degradation is None:
        return result
    return {**result, "degrade": degradation.as_json(), "capture_estimate": estimate}


def evaluate_lf(src, methods, *, grid=None, origin=(0, 0), scale=8, ref=(0, 0), pattern=None, index_base=None,
                device="cpu", progress=True, method_options=None, degradation: Degradation | None = None) -> dict:
    """The x8 protocol on a light-field folder: every non-reference view, each method; with ``degradation``, the
    LR views are degraded after the protocol's decimation (scores are against the clean HR)."""
    check_methods(methods, scale, method_options)
    with tempfile.TemporaryDirectory(prefix="lfrefsr-eval-") as tmp:
        store = ingest_lf(src, Path(tmp) / "eval.zarr", grid=grid, origin=origin, scale=scale, ref=ref,
                          pattern=pattern, index_base=index_base, progress=progress)
        store, estimate = degrade_store(store, degradation)
        tasks = plan(store)
        results = evaluate_store(store, methods, tasks, device=device, progress=progress, method_options=method_options)
    return _degraded({"kind": "lf", "src": str(src), "scale": scale, "grid": list(store.view_shape[-2:]),
                      "ref": list(ref), "shape_hr": list(store.shape_hr), "methods": results}, degradation, estimate)


def evaluate_video(src, methods, *, scale=8, max_frames=None, device="cpu", progress=True,
                   method_options=None, degradation: Degradation | None = None,
                   keyframe_every: int | None = None, reference_mode: ReferenceMode = ReferenceMode.KEYFRAME) -> dict:
    """Each frame t >= 1 super-resolved with HR frame t-1 as its reference; with ``keyframe_every`` K, only frames
    0, K, 2K, ... count as HR (a hybrid camera's keyframes) and each other frame is super-resolved from the latest
    of them (``reference_mode`` keyframe, up to K-1 frames of motion away) or from those before and after it
    (keyframes); ``degradation`` as ``evaluate_lf``."""
    check_methods(methods, scale, method_options)
    with tempfile.TemporaryDirectory(prefix="lfrefsr-eval-") as tmp:
        store = ingest_video(src, Path(tmp) / "eval.zarr", scale=scale, max_frames=max_frames, progress=progress)
        store, estimate = degrade_store(store, degradation)
        if keyframe_every is None:
            tasks = plan(store, reference_mode=ReferenceMode.PREVIOUS)
        else:
            tasks = plan(store, reference_mode=reference_mode, keyframe_every=keyframe_every)
        results = evaluate_store(store, methods, tasks, device=device, progress=progress, method_options=method_options)
        consistency = temporal_consistency(store, methods, tasks)
    for name in methods:
        results[name].update(consistency[name])
    keyframes = {} if keyframe_every is None else {"keyframe_every": keyframe_every,
                                                     "reference": ReferenceMode(reference_mode).value}
    return _degraded({"kind": "video", "src": str(src), "scale": scale, "frames": store.view_shape[0],
                      "shape_hr": list(store.shape_hr), **keyframes,
                      "flicker_hr": consistency["hr"]["flicker"],
                      "flicker_hr_per_pair": consistency["hr"]["flicker_per_pair"], "methods": results},
                     degradation, estimate)


def write_json(result: dict, path) -> None:
    write_text(path, json.dumps(result, indent=2) + "\n")


def table(result: dict) -> str:
    """A short text table of the mean scores (video: with the flicker, the HR frames' own beneath)."""
    video = "flicker_hr" in result
    header = f"{'method':<12} {'PSNR RGB':>9} {'PSNR Y':>8} {'SSIM Y':>7} {'s/view':>8}"
    lines = [header + (" flicker" if video else "")]
    for name, row in result["methods"].items():
        lines.append(f"{name:<12} {row['psnr_rgb']:>9.2f} {row['psnr_y']:>8.2f} {row['ssim_y']:>7.4f} "
                     f"{row['seconds']:>8.3f}" + (f" {row['flicker']:>7.2f}" if video else ""))
    if video:
        lines.append(f"{'HR frames':<12} {'':>9} {'':>8} {'':>7} {'':>8} {result['flicker_hr']:>7.2f}")
    return "\n".join(lines)
