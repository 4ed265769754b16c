"""``lfrefsr encode``: results re-encoded with PyAV for viewing (H.264), archiving (FFV1, lossless) or as PNGs.

What (``--what``):
    views   one PNG per view or frame
    grid    a mosaic of the light-field grid (an image; for a light-field video, a video of the mosaic over time)
    sweep   a video along a serpentine path over the grid (row 0 left to right, row 1 right to left, ...)
    clip    the video's frames (for a light-field video: view ``--view`` over time)

Each view comes from ``sr/<method>`` where done, the reference (HR) view where it is the reference, and otherwise
is reported missing. H.264 needs even sizes: frames are padded by one replicated row/column where needed; FFV1
(RGB, ``bgr0``/``gbrp16le``) decodes back bit-exactly; ``png`` writes a numbered PNG sequence in a folder.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np

from lfrefsr.axes import Kind
from lfrefsr.errors import InputError, LfrefsrError
from lfrefsr.io.atomic import atomic_path
from lfrefsr.io.images import write_image
from lfrefsr.io.store import Store


class What(str, Enum):
    VIEWS = "views"
    GRID = "grid"
    SWEEP = "sweep"
    CLIP = "clip"


class Codec(str, Enum):
    H264 = "h264"
    FFV1 = "ffv1"
    PNG = "png"


SUFFIX = {Codec.H264: ".mp4", Codec.FFV1: ".mkv", Codec.PNG: ""}


def pick_method(store: Store, method: str | None) -> str:
    """The requested method, or the best one the store holds (refsr before flowwarp before the rest)."""
    methods = store.methods()
    if method is not None:
        if method not in methods and method not in ("hr", "lr"):
            raise InputError(f"the store has no sr/{method} (it has: {', '.join(methods) or 'none'})", store.path)
        return method
    for preferred in ("refsr", "flowwarp", "sisr", "bicubic"):
        if preferred in methods:
            return preferred
    if methods:
        return methods[0]
    raise InputError("the store has no results yet: run `lfrefsr reconstruct` first", store.path)


def view_image(store: Store, method: str, index: tuple[int, ...], done: np.ndarray) -> np.ndarray:
    """(3, H, W) of one view: its result, or the HR data of a reference view."""
    if method in ("hr", "lr"):
        return store.read(method, index)
    if done[index]:
        return store.read_result(method, index)
    if store.hr_known[index]:
        return store.read("hr", index)
    raise InputError(f"view {list(index)} has no {method} result yet", store.path)


def frames_for(store: Store, what: What, method: str, view=None, t=None):
    """The frames (3, H, W) to encode, in order, as a generator, and how many there are."""
    done = store.done(method) if method not in ("hr", "lr") else None
    shape = store.view_shape
    if store.kind == Kind.VIDEO:
        if what not in (What.VIEWS, What.CLIP):
            raise InputError(f"--what {what.value} needs a light field; a video has views and clip", store.path)
        indices = [(k,) for k in range(shape[0])]
        return (view_image(store, method, i, done) for i in indices), indices
    rows, cols = shape[-2:]
    steps = [t] if t is not None else list(range(shape[0])) if store.kind == Kind.LFVIDEO else [None]
    if t is not None and (store.kind != Kind.LFVIDEO or not 0 <= t < shape[0]):
        raise InputError(f"--t {t} is not a time step of this store", store.path)
    lead = lambda step: () if step is None else (step,)  # noqa: E731
    if what == What.VIEWS:
        indices = [(*lead(s), u, v) for s in steps for u in range(rows) for v in range(cols)]
        return (view_image(store, method, i, done) for i in indices), indices
    if what == What.SWEEP:
        path = [(u, v if u % 2 == 0 else cols - 1 - v) for u in range(rows) for v in range(cols)]  # serpentine
        indices = [(*lead(s), u, v) for s in steps for u, v in path]
        return (view_image(store, method, i, done) for i in indices), indices
    if what == What.GRID:
        def mosaic(step):
            tiles = [[view_image(store, method, (*lead(step), u, v), done) for v in range(cols)] for u in range(rows)]
            return np.concatenate([np.concatenate(row, axis=2) for row in tiles], axis=1)  # (3, U*H, V*W)

        return (mosaic(s) for s in steps), [lead(s) for s in steps]
    if store.kind != Kind.LFVIDEO:  # clip of a light field
        raise InputError("--what clip needs a video or a light-field video (try sweep)", store.path)
    u, v = view if view is not None else (0, 0)
    if not (0 <= u < rows and 0 <= v < cols):
        raise InputError(f"--view {u},{v} is outside the {rows}x{cols} grid", store.path)
    indices = [(s, u, v) for s in range(shape[0])]
    return (view_image(store, method, i, done) for i in indices), indices


def _name(index: tuple[int, ...], kind: Kind) -> str:
    if kind == Kind.VIDEO:
        return f"frame_{index[0]:04d}.png"
    if kind == Kind.LFVIDEO:
        return f"t{index[0]:04d}_view_{index[1]:02d}_{index[2]:02d}.png"
    return f"view_{index[0]:02d}_{index[1]:02d}.png"


def write_video(path: Path, frames, *, codec: Codec, crf: int = 18, fps: float = 10.0) -> int:
    """Encode (3, H, W) uint8/uint16 frames; -> frame count."""
    import av

    count = 0
    with av.open(str(path), "w", format="mp4" if codec == Codec.H264 else "matroska") as container:
        stream = None
        for frame in frames:
            rgb = np.ascontiguousarray(frame.transpose(1, 2, 0))  # (H, W, 3)
            deep = rgb.dtype == np.uint16
            if codec == Codec.H264:
                rgb = (rgb >> 8).astype(np.uint8) if deep else rgb
                pad_y, pad_x = rgb.shape[0] % 2, rgb.shape[1] % 2  # yuv420p needs even sizes
                rgb = np.pad(rgb, ((0, pad_y), (0, pad_x), (0, 0)), mode="edge")
            if stream is None:
                stream = container.add_stream("libx264" if codec == Codec.H264 else "ffv1", rate=int(round(fps)))
                stream.width, stream.height = rgb.shape[1], rgb.shape[0]
                if codec == Codec.H264:
                    stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
                else:
                    stream.pix_fmt = "gbrp16le" if deep else "bgr0"
            video_frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep and codec == Codec.FFV1 else "rgb24")
            container.mux(stream.encode(video_frame))
            count += 1
        if stream is None:
            raise LfrefsrError("nothing to encode")
        container.mux(stream.encode())
    return count


def encode(store_path, out, *, what: What | str = What.VIEWS, method: str | None = None, view=None, t=None,
           codec: Codec | str = Codec.H264, crf: int = 18, fps: float = 10.0, overwrite: bool = False) -> Path:
    """Write ``what`` of a store to ``out`` (a folder for PNGs, else a video file); atomic: nothing half-written."""
    store = Store.open(store_path)
    what, codec = What(what), Codec(codec)
    method = pick_method(store, method)
    out = Path(out)
    frames, indices = frames_for(store, what, method, view=view, t=t)
    still = what == What.VIEWS or (what == What.GRID and len(indices) == 1)
    if not (still or codec == Codec.PNG) and out.suffix == "":
        out = out.with_suffix(SUFFIX[codec])
    if out.exists() and not overwrite:
        raise LfrefsrError("output exists (use --overwrite to replace it)", out)
    if still or codec == Codec.PNG:
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            for index, frame in zip(indices, frames, strict=True):
                grid_name = f"grid{'' if not index else f'_t{index[0]:04d}'}.png"
                name = _name(index, store.kind) if what != What.GRID else grid_name
                write_image(tmp / name, frame)
        return out
    with atomic_path(out) as tmp:
        write_video(tmp, frames, codec=codec, crf=crf, fps=fps)
    return out
