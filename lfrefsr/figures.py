"""Helpers that turn stores and evaluation results into pictures (used by the notebooks in ``notebooks/``).

All functions return numpy arrays or matplotlib figures; none writes files.
"""

from __future__ import annotations

import numpy as np

from lfrefsr import metrics, protocol
from lfrefsr.axes import Kind
from lfrefsr.io.store import Store


def to_display(image: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8/uint16 -> (H, W, 3) float in [0, 1] for ``imshow``."""
    return protocol.to_float(image, image.dtype).permute(1, 2, 0).numpy()


def view(store: Store, array: str, index: tuple[int, ...]) -> np.ndarray:
    """One view of ``hr``, ``lr`` (upsampled by bicubic to HR size for comparison) or a method's result."""
    if array == "lr":
        lr = protocol.to_float(store.read("lr", index), store.dtype)
        return protocol.quantize(protocol.upsample(lr, store.scale), store.dtype)
    if array == "hr":
        return store.read("hr", index)
    return store.read_result(array, index)


def mosaic(store: Store, array: str = "hr", t: int | None = None, step: int = 1) -> np.ndarray:
    """The grid as one image (3, U*H/step, V*W/step); the reference view shows HR for result arrays."""
    rows, cols = store.view_shape[-2:]
    lead = () if t is None else (t,)
    tiles = []
    for u in range(rows):
        row = []
        for v in range(cols):
            index = (*lead, u, v)
            use = "hr" if array not in ("hr", "lr") and (u, v) == tuple(store.ref) else array
            row.append(_shrink(view(store, use, index), step))
        tiles.append(np.concatenate(row, axis=2))
    return np.concatenate(tiles, axis=1)


def _shrink(image: np.ndarray, step: int) -> np.ndarray:
    """Antialiased downscale by ``step`` (a mosaic of 64 views would alias badly by plain sub-sampling)."""
    if step == 1:
        return image
    import torch.nn.functional as F

    small = F.interpolate(protocol.to_float(image, image.dtype)[None], scale_factor=1 / step, mode="area")[0]
    return protocol.quantize(small, image.dtype)


def epi(store: Store, array: str, *, u: int = 0, y: int | None = None, t: int | None = None) -> np.ndarray:
    """Horizontal epipolar-plane image: image row ``y`` of views (u, 0..V-1) stacked -> (3, V, W)."""
    if store.kind == Kind.VIDEO:
        raise ValueError("EPIs need a light field")
    cols = store.view_shape[-1]
    y = store.shape_hr[0] // 2 if y is None else y
    lead = () if t is None else (t,)
    rows = []
    for v in range(cols):
        use = "hr" if array not in ("hr", "lr") and (u, v) == tuple(store.ref) else array
        rows.append(view(store, use, (*lead, u, v))[:, y])
    return np.stack(rows, axis=1)


def psnr_grid(store: Store, method: str, t: int | None = None) -> np.ndarray:
    """RGB PSNR of every view against HR, NaN for the reference and for views without HR or result."""
    rows, cols = store.view_shape[-2:]
    lead = () if t is None else (t,)
    done = store.done(method)
    grid = np.full((rows, cols), np.nan)
    for u in range(rows):
        for v in range(cols):
            index = (*lead, u, v)
            if done[index] and store.hr_known[index]:
                grid[u, v] = metrics.psnr(protocol.to_float(store.read_result(method, index), store.dtype),
                                          protocol.to_float(store.read("hr", index), store.dtype))
    return grid


def error_map(result: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """Mean absolute error over channels, (H, W) in [0, 1]."""
    return np.abs(protocol.to_float(result, result.dtype) - protocol.to_float(hr, hr.dtype)).mean(0).numpy()


def offset_density(offsets: np.ndarray, radius: int = 6) -> np.ndarray:
    """2-D histogram (2*radius+1)^2 of match offsets (2, N) from the truth, as fractions (Figure 3, right)."""
    dx, dy = np.clip(np.round(offsets), -radius, radius).astype(int)
    density = np.zeros((2 * radius + 1, 2 * radius + 1))
    np.add.at(density, (dy + radius, dx + radius), 1)
    return density / max(len(dx), 1)


def accuracy_curves(result: dict):
    """Matplotlib figure of accuracy against threshold for each method of an ``eval match`` result (Figure 3)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, row in result["methods"].items():
        thresholds = sorted(int(t) for t in row["acc"])
        axis.plot(thresholds, [row["acc"][str(t)] for t in thresholds], marker="o", label=name)
    axis.set_xlabel("threshold (px)")
    axis.set_ylabel("matches within threshold (%)")
    axis.grid(alpha=0.3)
    axis.legend()
    return figure


def label(axis, title: str, xlabel: str, ylabel: str) -> None:
    """A line plot's title, axis labels, legend and light grid, as every notebook plot has them."""
    axis.set_title(title)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.legend()
    axis.grid(alpha=0.3)


def psnr_per_frame(result_store: Store, method: str, truth_store: Store, tasks) -> list[tuple[int, float]]:
    """(frame, RGB PSNR) of ``method``'s results in ``result_store`` against ``truth_store``'s HR frames."""
    out = []
    for task in tasks:
        sr = protocol.to_float(result_store.read_result(method, task.target), result_store.dtype)
        hr = protocol.to_float(truth_store.read("hr", task.target), truth_store.dtype)
        out.append((task.target[0], metrics.psnr(sr, hr)))
    return out


def reference_modes(src, method: str, workdir, *, keyframe_every: int = 3) -> dict:
    """PSNR per frame of a video for each reference mode: HR frame t-1 (all frames HR), the latest HR keyframe, the
    keyframes before and after, and the propagated previous result (HR only every ``keyframe_every`` frames).
    -> {mode label: [(t, dB), ...]}."""
    from pathlib import Path

    from lfrefsr.io.ingest import ingest_video
    from lfrefsr.modes import ReferenceMode
    from lfrefsr.pipeline import plan, run_serial

    workdir = Path(workdir)
    truth = ingest_video(src, workdir / "all-hr.zarr", progress=False, overwrite=True)
    curves = {}
    for label, mode in [("previous HR", ReferenceMode.PREVIOUS), ("keyframe", ReferenceMode.KEYFRAME),
                        ("keyframes", ReferenceMode.KEYFRAMES), ("previous SR", ReferenceMode.PREVIOUS_SR)]:
        if mode == ReferenceMode.PREVIOUS:
            store = truth
        else:
            store = ingest_video(src, workdir / f"{mode.value}.zarr", keyframe_every=keyframe_every,
                                 progress=False, overwrite=True)
        tasks = plan(store, reference_mode=mode)
        run_serial(tasks, method, progress=False)
        curves[label] = psnr_per_frame(store, method, truth, tasks)
    return curves


def keyframe_spacing(src, method: str, workdir, *, spacings=(1, 2, 4, 8), max_frames: int | None = None) -> dict:
    """Mean RGB PSNR over the frames between keyframes against the keyframe spacing K, for the latest keyframe
    (``keyframe``) and the keyframes on both sides (``keyframes``): how often a hybrid camera must record HR.
    K = 1 (every frame HR) is frame t from HR frame t-1 in both. -> {mode: [(K, dB), ...]}."""
    from pathlib import Path

    from lfrefsr.io.ingest import ingest_video
    from lfrefsr.modes import ReferenceMode
    from lfrefsr.pipeline import plan, run_serial

    store = ingest_video(src, Path(workdir) / "spacing.zarr", progress=False, overwrite=True, max_frames=max_frames)
    curves: dict = {ReferenceMode.KEYFRAME.value: [], ReferenceMode.KEYFRAMES.value: []}

    def mean_psnr(tasks) -> float:
        run_serial(tasks, method, progress=False, overwrite=True)
        scores = [psnr for _, psnr in psnr_per_frame(store, method, store, tasks)]
        return sum(scores) / len(scores)

    for spacing in spacings:
        if spacing == 1:  # both modes are frame t from HR frame t-1: run once
            every = mean_psnr(plan(store, reference_mode=ReferenceMode.PREVIOUS))
            for points in curves.values():
                points.append((1, every))
            continue
        for mode, points in curves.items():
            points.append((spacing, mean_psnr(plan(store, reference_mode=ReferenceMode(mode), keyframe_every=spacing))))
    return curves
