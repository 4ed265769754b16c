"""Ingest: light-field folders, light-field videos (folders of captures), videos and frame folders -> a store.

Everything is validated from file headers before the store is created, and the store is written to a temporary
sibling that is renamed into place at the end: a failure leaves nothing at the output path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from lfrefsr import capture, protocol
from lfrefsr.axes import Kind
from lfrefsr.errors import InputError, StoreError
from lfrefsr.io import layouts
from lfrefsr.io.atomic import atomic_path
from lfrefsr.io.backends import remove_lock
from lfrefsr.io.images import image_size, read_image
from lfrefsr.io.store import Store


@dataclass(frozen=True)
class ViewSource:
    """Where one view's pixels come from: an HR file (LR made by the protocol) and/or a real LR file."""

    index: tuple[int, ...]
    hr: Path | None
    lr: Path | None = None


def check_output(store_path: Path, overwrite: bool) -> None:
    """Refuse an existing output without ``overwrite`` and an unwritable location, before any work."""
    if store_path.exists() and not overwrite:
        raise StoreError("output exists (use --overwrite to replace it)", store_path)
    parent = store_path.absolute().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        raise StoreError("output location is not writable", parent)


def _start(src, store_path, overwrite: bool) -> tuple[Path, Path]:
    """The checks every ingest makes before reading anything: output free and writable, input present."""
    src, store_path = Path(src), Path(store_path)
    check_output(store_path, overwrite)
    if not src.exists():
        raise InputError("input not found", src)
    return src, store_path


def _common_size(paths: list[Path]) -> tuple[int, int]:
    sizes: dict[tuple[int, int], Path] = {}
    for path in paths:
        sizes.setdefault(image_size(path), path)
        if len(sizes) > 1:
            (first, first_path), (other, other_path) = sizes.items()
            raise InputError(
                f"views of different sizes: {first[0]}x{first[1]} ({first_path.name}) and {other[0]}x{other[1]}",
                other_path,
            )
    return next(iter(sizes))


def _write_store(
    store_path: Path,
    sources: list[ViewSource],
    *,
    kind: Kind,
    view_shape: tuple[int, ...],
    scale: int,
    ref: tuple[int, int] | None,
    source: str,
    overwrite: bool,
    extra: dict | None = None,
    progress: bool = True,
) -> Store:
    """Validate sizes from headers, then write every view into a temporary store and rename it into place."""
    hr_paths = [s.hr for s in sources if s.hr is not None]
    lr_paths = [s.lr for s in sources if s.lr is not None]
    if not hr_paths:
        raise InputError("no HR image found", source)
    height, width = _common_size(hr_paths)
    protocol.check_scale(scale, (height, width), hr_paths[0])
    shape_hr = (height - height % scale, width - width % scale)
    if lr_paths:
        lr_size = _common_size(lr_paths)
        if (lr_size[0] * scale > height) or (lr_size[1] * scale > width):
            raise InputError(
                f"LR views {lr_size[0]}x{lr_size[1]} x{scale} exceed the HR reference {height}x{width}", lr_paths[0]
            )
        shape_hr = (lr_size[0] * scale, lr_size[1] * scale)
    first = read_image(hr_paths[0])
    hr_known = np.zeros(view_shape, dtype=bool)
    for s in sources:
        hr_known[s.index] = s.hr is not None
    with atomic_path(store_path) as tmp, _lock_removed(tmp):
        store = Store.create(
            tmp, kind=kind, view_shape=view_shape, shape_hr=shape_hr, scale=scale, dtype=first.dtype, ref=ref,
            hr_known=hr_known, source=source, extra=extra,
        )
        for item in tqdm(sources, desc="ingest", unit="view", disable=not progress):
            if item.hr is not None:
                hr = read_image(item.hr)
                if hr.dtype != first.dtype:
                    raise InputError(f"bit depth {hr.dtype} differs from the first view's {first.dtype}", item.hr)
                hr = np.ascontiguousarray(hr[:, : shape_hr[0], : shape_hr[1]])
                store.write("hr", item.index, hr)
            if item.lr is not None:
                lr = read_image(item.lr).astype(first.dtype)
                lr = lr[:, : shape_hr[0] // scale, : shape_hr[1] // scale]  # (3, h, w)
                store.write("lr", item.index, np.ascontiguousarray(lr))
            else:
                store.write("lr", item.index, protocol.make_lr(hr, scale))
    return Store.open(store_path)


@contextlib.contextmanager
def _lock_removed(tmp: Path):
    """Remove the HDF5 sidecar lock of the temporary store however the write ends (a failure leaves nothing)."""
    try:
        yield
    finally:
        remove_lock(tmp)


def _captures(src: Path, pattern, index_base) -> list[Path]:
    """[src] for one capture, else its subfolders that hold captures (a light-field video), sorted by name."""
    if layouts.is_capture_folder(src, pattern=pattern, index_base=index_base):
        return [src]
    subfolders = sorted((p for p in src.iterdir() if p.is_dir()), key=lambda p: p.name) if src.is_dir() else []
    captures = [p for p in subfolders if layouts.is_capture_folder(p, pattern=pattern, index_base=index_base)]
    if not captures:
        layouts.detect(src, pattern=pattern, index_base=index_base)  # raises the precise error
    return captures


def ingest_lf(
    src: str | Path,
    store_path: str | Path,
    *,
    grid: tuple[int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
    scale: int = 8,
    ref: tuple[int, int] = (0, 0),
    lr_dir: str | Path | None = None,
    pattern: str | None = None,
    index_base: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Store:
    """A light-field folder (or a folder of capture subfolders) -> a light-field (or light-field video) store."""
    src, store_path = _start(src, store_path, overwrite)
    captures = _captures(src, pattern, index_base)
    grids = [layouts.detect(c, pattern=pattern, index_base=index_base).cut(grid, origin) for c in captures]
    rows, cols = grids[0].rows, grids[0].cols
    if not (0 <= ref[0] < rows and 0 <= ref[1] < cols):
        raise InputError(f"reference view {ref[0]},{ref[1]} is outside the {rows}x{cols} grid", src)
    lr_grids = None
    if lr_dir is not None:
        lr_dir = Path(lr_dir)
        lr_folders = [lr_dir / c.relative_to(src) for c in captures] if captures != [src] else [lr_dir]
        lr_grids = [layouts.detect(f, pattern=pattern, index_base=index_base).cut(grid, origin) for f in lr_folders]
    is_video = captures != [src]
    sources = []
    for t, files in enumerate(grids):
        for (u, v), path in files.files.items():
            index = (t, u, v) if is_video else (u, v)
            if lr_grids is None:
                sources.append(ViewSource(index, path))
            else:
                sources.append(ViewSource(index, path if (u, v) == tuple(ref) else None, lr_grids[t].files[(u, v)]))
    view_shape = (len(grids), rows, cols) if is_video else (rows, cols)
    store = _write_store(
        store_path, sources, kind=Kind.LFVIDEO if is_video else Kind.LF, view_shape=view_shape, scale=scale,
        ref=tuple(ref), source=str(src.absolute()), overwrite=overwrite, progress=progress,
        extra={"layout": grids[0].layout, "origin": list(origin), "hybrid": lr_dir is not None,
               "captures": [c.name for c in captures] if is_video else None},
    )
    if lr_dir is not None:  # a camera's LR views: what its lens and sensor do, from the reference view's pair
        capture.record(store)
    return store


def ingest_video(
    src: str | Path,
    store_path: str | Path,
    *,
    scale: int = 8,
    keyframe_every: int | None = None,
    max_frames: int | None = None,
    lr: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Store:
    """A video file or a folder of frames -> a video store; HR kept on every frame or only on keyframes.

    ``lr``: a second stream (video file or frame folder) of the same frames at 1/``scale``, from the LR camera of a
    hybrid rig: its frames are the store's LR frames instead of the protocol's. Its frame count and size must match
    the HR stream's (``height // scale`` x ``width // scale``); a mismatch is refused naming both."""
    from lfrefsr.io import video

    src, store_path = _start(src, store_path, overwrite)
    if keyframe_every is not None and keyframe_every < 1:
        raise InputError(f"--keyframe-every must be >= 1, got {keyframe_every}")
    if max_frames is not None and max_frames < 2:
        raise InputError(f"--max-frames must be >= 2, got {max_frames}")
    count, (height, width) = video.probe(src, max_frames)
    if count is not None and count < 2:  # known from the folder or the container: refuse before writing
        raise InputError(f"a video needs at least 2 frames (a reference and a target), found {count}", src)
    protocol.check_scale(scale, (height, width), src)
    shape_hr = (height - height % scale, width - width % scale)
    lr = None if lr is None else Path(lr)
    lr_frames = None if lr is None else _lr_frames(lr, src, count, (height, width), scale, max_frames)
    frames = video.iter_frames(src, max_frames)
    with atomic_path(store_path) as tmp, _lock_removed(tmp):
        written = 0
        store = None
        for t, hr in enumerate(tqdm(frames, desc="ingest", unit="frame", total=count, disable=not progress)):
            if store is None:
                dtype = hr.dtype
                capacity = max(count or 0, 2)
                store = _VideoWriter(tmp, capacity, shape_hr, scale, dtype, src, keyframe_every, lr)
            if hr.shape[1:] != (height, width):
                raise InputError(f"frame {t} is {hr.shape[1]}x{hr.shape[2]}, the first is {height}x{width}", src)
            lr_frame = None if lr_frames is None else next(lr_frames, None)
            if lr_frames is not None and lr_frame is None:
                raise InputError(f"the LR stream ends after {t} frames, the HR stream {src} goes on", lr)
            store.add(t, np.ascontiguousarray(hr[:, : shape_hr[0], : shape_hr[1]]), lr_frame)
            written = t + 1
        if lr_frames is not None and next(lr_frames, None) is not None:
            raise InputError(f"the LR stream has more frames than the {written} of the HR stream {src}", lr)
        if written < 2:
            raise InputError(f"a video needs at least 2 frames (a reference and a target), found {written}", src)
        store.finish(written)
    store = Store.open(store_path)
    if lr is not None:  # the LR camera's frames: its lens and sensor, from the keyframes' pairs
        capture.record(store)
    return store


def _lr_frames(lr: Path, src: Path, count: int | None, size: tuple[int, int], scale: int, max_frames: int | None):
    """The frames of a hybrid rig's LR stream ``lr``, once its size and frame count are checked against the HR
    stream's (``count`` None: not known before decoding; then the frames are counted as they come)."""
    from lfrefsr.io import video

    height, width = size
    lr_count, lr_size = video.probe(lr, max_frames)
    expected = (height // scale, width // scale)
    if lr_size != expected:
        raise InputError(f"LR frames are {lr_size[0]}x{lr_size[1]}, but the HR frames of {src} are "
                         f"{height}x{width}: at x{scale} the LR frames must be {expected[0]}x{expected[1]}", lr)
    if count is not None and lr_count is not None and lr_count != count:
        raise InputError(f"the LR stream has {lr_count} frames, the HR stream {src} has {count}", lr)
    return video.iter_frames(lr, max_frames)


class _VideoWriter:
    """Writes frames as they are decoded; the frame count is fixed (and the arrays resized) at the end."""

    def __init__(self, path, capacity, shape_hr, scale, dtype, src, keyframe_every, lr_src=None):
        self.keyframe_every = keyframe_every
        self.capacity = capacity
        self.scale = scale
        self.store = Store.create(
            path, kind=Kind.VIDEO, view_shape=(capacity,), shape_hr=shape_hr, scale=scale, dtype=dtype, ref=None,
            hr_known=np.ones(capacity, bool), source=str(Path(src).absolute()),
            extra={"keyframe_every": keyframe_every,
                   **({"lr_source": str(Path(lr_src).absolute())} if lr_src is not None else {})},
        )
        self._backend = self.store.backend

    def is_key(self, t: int) -> bool:
        return self.keyframe_every is None or t % self.keyframe_every == 0

    def add(self, t: int, hr: np.ndarray, lr: np.ndarray | None = None) -> None:
        """Frame ``t``: HR (3, H, W) where it is a keyframe; LR (3, h, w) from the LR camera, else by the protocol
        (of another bit depth: rescaled to the HR's)."""
        if t >= self.capacity:
            self.capacity = max(2 * self.capacity, t + 1)
            self._resize(self.capacity)
        if self.is_key(t):
            self._backend.write("hr", (t,), hr)
        if lr is None:
            lr = protocol.make_lr(hr, self.scale)
        elif lr.dtype != hr.dtype:
            lr = protocol.quantize(protocol.to_float(lr), hr.dtype)
        self._backend.write("lr", (t,), lr)

    def _resize(self, frames: int) -> None:
        self._backend.resize_leading(("hr", "lr"), frames)

    def finish(self, frames: int) -> None:
        if frames != self.capacity:
            self._resize(frames)
        hr_known = [self.is_key(t) for t in range(frames)]
        self._backend.update_attrs({"view_shape": [frames], "hr_known": hr_known})

