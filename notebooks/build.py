"""Writes the notebooks of this folder from the cell sources below (committed without outputs).

    python notebooks/build.py
"""

from pathlib import Path

import nbformat

HERE = Path(__file__).parent

SETUP = '''\
import os
import tempfile
from pathlib import Path

%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

import lfrefsr
from lfrefsr import figures

DATA = Path(os.environ.get("LFREFSR_DATA", Path.cwd().parent / "shared" / "data"))
if not DATA.is_dir():
    DATA = Path(lfrefsr.__file__).resolve().parents[2] / "shared" / "data"
WORK = Path(tempfile.mkdtemp(prefix="lfrefsr-notebook-"))
QUICK = os.environ.get("LFREFSR_NOTEBOOK_QUICK") == "1"  # the test suite: a smaller share of the real data
print("lfrefsr", lfrefsr.__version__, "| development data:", DATA if DATA.is_dir() else "absent")'''

LIGHTFIELD = [
    ("md", "# Light field: the grid, EPIs, per-view PSNR, crops and errors\n"
           "Runs on the HCI backgammon scene when `../shared/data` is present, otherwise on the embedded default "
           "(a synthetic 8x8 light field)."),
    ("code", SETUP),
    ("code", '''\
from lfrefsr.demo import demo_methods, write_inputs
from lfrefsr.io.ingest import ingest_lf
from lfrefsr.methods import method_class as get_method_class
from lfrefsr.pipeline import plan, run_serial

if (DATA / "lightfields" / "hci-backgammon").is_dir():
    name, store = "backgammon", ingest_lf(DATA / "lightfields" / "hci-backgammon", WORK / "lf.zarr",
                                          grid=(4, 4) if QUICK else None, progress=False)
else:
    lf_dir, _ = write_inputs(WORK)
    name, store = "embedded", ingest_lf(lf_dir, WORK / "lf.zarr", progress=False)
methods = [m for m in demo_methods()]
for method in methods:  # with the per-pixel confidences of the methods that give them (--save-confidence)
    confidence = bool(get_method_class(method).confidence)
    print(name, run_serial(plan(store), method, progress=False, confidence=confidence).line())'''),
    ("code", '''\
best = methods[-1]
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
for axis, array in zip(axes, ["lr", best, "hr"], strict=True):
    axis.imshow(figures.to_display(figures.mosaic(store, array, step=4)))
    axis.set_title(f"grid: {array}")
    axis.axis("off")
plt.show()'''),
    ("code", '''\
y = store.shape_hr[0] // 2
fig, axes = plt.subplots(3, 1, figsize=(12, 5))
for axis, array in zip(axes, ["lr", best, "hr"], strict=True):
    axis.imshow(figures.to_display(figures.epi(store, array, u=0, y=y)), aspect="auto", interpolation="nearest")
    axis.set_ylabel(array)
    axis.set_yticks([])
axes[0].set_title(f"epipolar-plane images, row u=0, image row y={y}")
plt.show()'''),
    ("code", '''\
fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 4))
for axis, method in zip(np.atleast_1d(axes), methods, strict=True):
    grid = figures.psnr_grid(store, method)
    image = axis.imshow(grid, cmap="viridis")
    axis.set_title(f"{method}: mean {np.nanmean(grid):.2f} dB")
    fig.colorbar(image, ax=axis)
plt.show()'''),
    ("md", "The disparity all views share, as refsr estimates it from the LR views and the reference "
           "(`lfrefsr.lightfield`): each view's flow to the reference is this disparity times its grid offset. "
           "On backgammon the HCI ground truth (for the centre view, so shifted by 4 grid steps) is beside it."),
    ("code", '''\
import torch

from lfrefsr import protocol
from lfrefsr.lightfield import estimate_disparity

ref_index = tuple(store.ref)
ref = protocol.to_float(store.read("hr", ref_index), store.dtype)
views = [((u - ref_index[0], v - ref_index[1]), protocol.to_float(store.read("lr", (u, v)), store.dtype))
         for u, v in store.views() if (u, v) != ref_index]
with torch.inference_mode():
    disparity = estimate_disparity(ref, views, store.scale).numpy()
panels = [("reference (HR)", figures.to_display(store.read("hr", ref_index))),
          ("disparity from the LR views (px per grid step)", disparity)]
truth = DATA / "lightfields" / "hci-backgammon" / "gt_disp_lowres.pfm"
if name == "backgammon" and truth.is_file():
    from lfrefsr.io.flow import read_pfm
    panels.append(("HCI ground truth, centre view", read_pfm(truth)))
low, high = np.percentile(disparity, [1, 99])
fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5))
for axis, (title, image) in zip(axes, panels, strict=True):
    colour = image.ndim == 3
    shown = axis.imshow(image, cmap="viridis", vmin=None if colour else low, vmax=None if colour else high)
    axis.set_title(title)
    axis.axis("off")
    if image.ndim == 2:
        fig.colorbar(shown, ax=axis, fraction=0.046)
plt.show()'''),
    ("md", "Where the best method trusted the reference, for the view farthest from it (`reconstruct "
           "--save-confidence` stores these as `confidence/<method>`): the alignment's trust in the warped "
           "reference, and SS-Net's M(0), how much of the reference it took."),
    ("code", '''\
index = tuple(s - 1 for s in store.view_shape)
channels = store.confidence_channels(best)
if channels:
    found = store.read_confidence(best, index)
    fig, axes = plt.subplots(1, len(channels) + 1, figsize=(5 * (len(channels) + 1), 4.5))
    axes[0].imshow(figures.to_display(figures.view(store, best, index)))
    axes[0].set_title(f"{best}, view {index}")
    for axis, channel, image in zip(axes[1:], channels, found, strict=True):
        shown = axis.imshow(image, cmap="viridis", vmin=0, vmax=1)
        axis.set_title(f"confidence: {channel} (mean {image.mean():.2f})")
        fig.colorbar(shown, ax=axis, fraction=0.046)
    for axis in axes:
        axis.axis("off")
    plt.show()'''),
    ("code", '''\
index = tuple(s - 1 for s in store.view_shape)  # the view farthest from the reference
hr = store.read("hr", index)
h, w = store.shape_hr
box = (slice(h // 3, h // 3 + h // 4), slice(w // 3, w // 3 + w // 4))
panels = ["lr"] + methods + ["hr"]
fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.5))
for k, array in enumerate(panels):
    image = figures.view(store, array, index)
    axes[0, k].imshow(figures.to_display(image)[box])
    axes[0, k].set_title(array)
    axes[0, k].axis("off")
    axes[1, k].imshow(figures.error_map(image, hr)[box], cmap="magma", vmin=0, vmax=0.2)
    axes[1, k].axis("off")
plt.show()'''),
]

CORRESPONDENCE = [
    ("md", "# Correspondence: CC-Net against ZNCC and gradient features\n"
           "Matches drawn over the image pair, the density of offsets from the ground truth (the paper's Figure 3, "
           "right) and accuracy against threshold (Figure 3, left). Uses `../shared/data/match` when present, "
           "otherwise a synthetic pair with exact ground truth."),
    ("code", SETUP),
    ("code", '''\
from lfrefsr.correspondence.evaluate import evaluate_match, load_pair
from lfrefsr.data.synthetic import make_lightfield
from lfrefsr.io.flow import write_flo
from lfrefsr.io.images import write_image

if (DATA / "match").is_dir():
    pairs = [DATA / "match" / "sintel-alley_1-clean", DATA / "match" / "hci-backgammon-c44-to-00"][QUICK:]
else:
    data = make_lightfield(grid=4, size=(192, 256), seed=7, max_disparity=2.0)
    folder = WORK / "pair"
    folder.mkdir()
    write_image(folder / "target.png", data["hr"][3, 3])
    write_image(folder / "reference.png", data["hr"][0, 0])
    write_flo(folder / "flow.flo", data["flow"][3, 3])
    write_image(folder / "valid.png", np.repeat((~data["occlusion"][3, 3])[None].astype(np.uint8) * 255, 3, 0))
    pairs = [folder]
SEARCH = 24  # pixels: keeps the exact ZNCC quick here (`lfrefsr eval match` uses 100)
result = evaluate_match(pairs, ["ccnet", "zncc_blurry", "gradient"], search_range=SEARCH, progress=False)
for name, row in result["methods"].items():
    print(f"{name:12s}", " ".join(f"{row['acc'][str(t)]:5.1f}" for t in range(7)), f"n={row['n']}")'''),
    ("code", '''\
from lfrefsr import protocol
from lfrefsr.correspondence.matchers import get_matcher

pair = load_pair(pairs[0], 8)
lr = protocol.to_float(protocol.quantize(protocol.downsample(pair["target"], 8)))
found = {}
for name in ["ccnet", "zncc_blurry"]:
    matcher = get_matcher(name, search_range=SEARCH)
    found[name] = matcher.match(lr, matcher.prepare(pair["ref"]))
fig, axes = plt.subplots(1, 2, figsize=(14, 4))
target, ref = (x.permute(1, 2, 0).numpy() for x in (pair["target"], pair["ref"]))
axes[0].imshow(np.concatenate([target, ref], axis=1))
centres, position = found["ccnet"].centres, found["ccnet"].position
width = target.shape[1]
for m in range(2, centres.shape[1], 6):
    for n in range(2, centres.shape[2], 6):
        axes[0].plot([centres[0, m, n], position[0, m, n] + width], [centres[1, m, n], position[1, m, n]], lw=0.6)
axes[0].set_title("CC-Net matches (target | reference)")
axes[0].axis("off")
figures.accuracy_curves(result).axes[0].set_title("accuracy against threshold")
plt.sca(axes[1])
axes[1].axis("off")
plt.show()'''),
    ("code", '''\
from lfrefsr.correspondence.evaluate import score_matches

fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for axis, (name, matches) in zip(axes, found.items(), strict=True):
    offsets = score_matches(matches.position.float(), pair, 8, SEARCH)["offsets"].numpy()
    axis.imshow(figures.offset_density(offsets), extent=(-6.5, 6.5, 6.5, -6.5), cmap="jet")
    axis.set_title(f"{name}: offset from truth (px)")
plt.show()'''),
    ("md", "CC-Net's own best match per centre (`aggregate=1`, the paper) against the default aggregation over 7x7 "
           "neighbouring centres: each centre's distance from the truth. On hci-backgammon the far errors sit on the "
           "combs of wedges, where a single 65-px patch sees a neighbouring tooth (search +-24 px here, as above)."),
    ("code", '''\
import torch

last = load_pair(pairs[-1], 8)
last_lr = protocol.stored_lr(last["target"], 8)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].imshow(last["target"].permute(1, 2, 0).numpy())
axes[0].set_title(pairs[-1].name)
axes[0].axis("off")
for axis, size in zip(axes[1:], [1, 7], strict=True):
    matcher = get_matcher("ccnet", search_range=SEARCH, aggregate=size)
    matches = matcher.match(last_lr, matcher.prepare(last["ref"]))
    error = torch.hypot(*(matches.flow - last["flow"][:, ::8, ::8])).numpy()  # (Ny, Nx) px at HR scale
    error[~last["valid"][::8, ::8].numpy()] = np.nan
    shown = axis.imshow(error, cmap="magma", vmin=0, vmax=6)
    within = 100 * np.nanmean(error <= 1.5)
    axis.set_title(f"aggregate {size}: {within:.1f} % within 1.5 px")
    axis.axis("off")
fig.colorbar(shown, ax=axes[1:], label="distance from truth (px)")
plt.show()'''),
]

VIDEO = [
    ("md", "# Video: frames over time, PSNR per frame for each reference mode, flicker, SS-Net's confidences\n"
           "The embedded clip (synthetic, moving layers), and Sintel `alley_1` when `../shared/data` is present."),
    ("code", SETUP),
    ("code", '''\
from lfrefsr.demo import demo_methods, write_inputs

_, clip_dir = write_inputs(WORK)
sources = {"embedded": clip_dir}
if QUICK:  # the test suite: the embedded clip's first 4 frames, keyframes 0 and 3
    import shutil

    (WORK / "clip-4").mkdir()
    for frame in sorted(clip_dir.glob("frame_*.png"))[:4]:
        shutil.copy(frame, WORK / "clip-4" / frame.name)
    sources["embedded"] = WORK / "clip-4"
if (DATA / "video" / "sintel-alley_1" / "clean").is_dir():
    sources["alley_1"] = DATA / "video" / "sintel-alley_1" / "clean"
    if QUICK:  # the test suite: the middle 384 x 160 of each frame, a seventh of the pixels
        from lfrefsr.io.images import read_image, write_image

        (WORK / "alley_1-middle").mkdir()
        for frame in sorted(sources["alley_1"].glob("frame_*.png")):
            write_image(WORK / "alley_1-middle" / frame.name, read_image(frame)[:, 138:298, 320:704])
        sources["alley_1"] = WORK / "alley_1-middle"
method = "refsr" if "refsr" in demo_methods() else "flowwarp"
curves = {}
for name, src in sources.items():
    (WORK / name).mkdir()
    for label, points in figures.reference_modes(src, method, WORK / name).items():
        curves[(name, label)] = points
print(method)'''),
    ("code", '''\
fig, axes = plt.subplots(1, len(sources), figsize=(6 * len(sources), 3.5))
for axis, name in zip(np.atleast_1d(axes), sources, strict=True):
    for (source, label), points in curves.items():
        if source == name:
            axis.plot(*zip(*points, strict=True), marker="o", label=label)
    figures.label(axis, f"{name}: {method} PSNR per frame", "frame", "dB")
plt.show()'''),
    ("md", "Keyframe spacing: a hybrid camera records HR every K frames. Mean PSNR over the frames in between, "
           "from the latest keyframe alone (`--reference keyframe`) and from the keyframes before and after "
           "(`--reference keyframes`), so a user can choose a capture rate."),
    ("code", '''\
fig, axes = plt.subplots(1, len(sources), figsize=(6 * len(sources), 3.5))
for axis, name in zip(np.atleast_1d(axes), sources, strict=True):
    spacings = (1, 2) if QUICK else (1, 2, 4, 8)
    spacing = figures.keyframe_spacing(sources[name], method, WORK / name, spacings=spacings)
    for mode, points in spacing.items():
        axis.plot(*zip(*points, strict=True), marker="o", label=mode)
    axis.set_xscale("log", base=2)
    figures.label(axis, f"{name}: {method}, frames between keyframes", "keyframe every K frames", "mean PSNR (dB)")
plt.show()'''),
    ("md", "Flicker per pair of consecutive frames (`eval video`'s `flicker`): the mean absolute difference between "
           "frame t and frame t+1 warped back by the HR frames' flow, where that flow is consistent both ways. The HR "
           "frames' own figure is what the flow cannot explain; above it is flicker a method added."),
    ("code", '''\
from lfrefsr.evaluate import evaluate_video

fig, axes = plt.subplots(1, len(sources), figsize=(6 * len(sources), 3.5))
for axis, name in zip(np.atleast_1d(axes), sources, strict=True):
    result = evaluate_video(sources[name], sorted({"bicubic", "flowwarp", method}), progress=False,
                            max_frames=3 if QUICK else None)
    rows = {"HR frames": result["flicker_hr_per_pair"]}
    rows.update({label: entry["flicker_per_pair"] for label, entry in result["methods"].items()})
    for label, per_pair in rows.items():
        axis.plot([row["frame"] for row in per_pair], [row["flicker"] for row in per_pair], marker="o",
                  label=label, linestyle="--" if label == "HR frames" else "-")
    figures.label(axis, f"{name}: flicker per frame pair (t, t+1)", "frame t", "mean |difference| (0-255)")
plt.show()'''),
    ("code", '''\
from lfrefsr.io.store import Store

store = Store.open(WORK / "embedded" / "all-hr.zarr")
frames = range(store.view_shape[0])
fig, axes = plt.subplots(2, len(frames), figsize=(3 * len(frames), 4.5))
for t in frames:
    axes[0, t].imshow(figures.to_display(figures.view(store, "lr", (t,))))
    axes[0, t].set_title(f"LR t={t}")
    axes[1, t].imshow(figures.to_display(store.read("hr", (t,))))
    axes[1, t].set_title(f"HR t={t}")
for axis in axes.flat:
    axis.axis("off")
plt.show()'''),
    ("code", '''\
from lfrefsr import protocol
from lfrefsr.methods import get_method

if method == "refsr":
    refsr = get_method("refsr")
    t = store.view_shape[0] - 1
    lr = protocol.to_float(store.read("lr", (t,)))
    # the confidences `reconstruct --save-confidence` stores: the alignment's trust, SS-Net's M(0)
    context = refsr.prepare(protocol.to_float(store.read("hr", (t - 1,))))
    sr, (trust, mask) = refsr.super_resolve_with_confidence(lr, context)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].imshow(sr.permute(1, 2, 0).numpy())
    axes[0].set_title(f"refsr, frame {t}")
    axes[1].imshow(sr.permute(1, 2, 0).numpy())
    axes[1].imshow(1 - trust.numpy(), cmap="Blues", alpha=0.6, vmin=0, vmax=1)
    axes[1].set_title("where the alignment distrusts the warped reference")
    axes[2].imshow(sr.permute(1, 2, 0).numpy())
    axes[2].imshow(1 - mask.numpy(), cmap="Reds", alpha=0.6, vmin=0, vmax=1)
    axes[2].set_title("where SS-Net ignores the reference (1 - M(0))")
    for axis in axes:
        axis.axis("off")
    plt.show()
else:
    print("refsr's networks are not installed: SS-Net masks need them")'''),
]


def build(name: str, cells, folder: Path = HERE) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    # Ids numbered by position rather than nbformat's random ones, so that a rebuild of unchanged sources leaves the
    # committed notebooks unchanged.
    new_cell = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    notebook.cells = [new_cell[kind](src, id=f"cell-{index}") for index, (kind, src) in enumerate(cells)]
    nbformat.write(notebook, folder / name)


NOTEBOOKS = {"01_lightfield.ipynb": LIGHTFIELD, "02_correspondence.ipynb": CORRESPONDENCE, "03_video.ipynb": VIDEO}

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        build(name, cells)
