"""Stores: one layout in zarr v3 (default, a directory) or HDF5 (a ``.h5``/``.hdf5`` file); the file formats are
``lfrefsr.io.backends``.

Layout version 1 (group attributes)::

    lfrefsr_layout  1                      refused when unknown
    lfrefsr_version package version that wrote it
    kind            "lf" | "video" | "lfvideo"
    axes            e.g. ["u", "v", "c", "y", "x"]
    view_shape      leading (view) dims, e.g. [8, 8] or [T] or [T, 8, 8]
    grid            [U, V] for light fields, null for video
    scale, ref      scale factor; reference view [u, v] (light field) or null (video)
    shape_hr        [H, W]; shape_lr [h, w] = shape_hr / scale
    hr_known        nested booleans over the view dims: where HR exists (all, the reference only, keyframes)
    source          where the data came from

Arrays (each with the axes above, one chunk per view or frame, dtype of the source)::

    hr              HR views/frames where known (zeros elsewhere: missing chunks are never written)
    lr              LR views/frames
    sr/<method>     results
    done/<method>   uint8 over the view dims, one chunk per view: 1 once that view's result is on disk
    confidence/<method>  (``reconstruct --save-confidence``) uint8, per view (K, H, W): the method's per-pixel
                    confidences in [0, 1] x 255, one channel per name in the array's ``channels`` attribute

A result (and its confidence) is written before its done-marker, so a killed run never leaves a view marked done
without its data.
Readers and writers open the store per call, so the objects here are small and picklable (a dask graph carries
them, and tasks open files themselves).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfrefsr import __version__
from lfrefsr.axes import Kind
from lfrefsr.errors import StoreError
from lfrefsr.io.backends import backend_for, open_backend, remove_lock

__all__ = ["LAYOUT_VERSION", "Store", "backend_for", "remove_lock"]  # the last two: from before the backends moved

LAYOUT_VERSION = 1


@dataclass(frozen=True)
class Store:
    """Metadata of an opened store (read up front) and per-view access to its arrays. Picklable: paths only."""

    path: Path
    kind: Kind
    view_shape: tuple[int, ...]
    channels: int
    shape_hr: tuple[int, int]
    scale: int
    dtype: np.dtype
    ref: tuple[int, int] | None
    hr_known: np.ndarray = field(repr=False, compare=False)
    attrs: dict = field(repr=False, compare=False)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        kind: Kind,
        view_shape: tuple[int, ...],
        shape_hr: tuple[int, int],
        scale: int,
        dtype,
        ref: tuple[int, int] | None,
        hr_known: np.ndarray,
        source: str,
        channels: int = 3,
        extra: dict | None = None,
    ) -> Store:
        """Create an empty store at ``path`` (which must not exist; ingest writes to a temporary path)."""
        path = Path(path)
        kind = Kind(kind)
        height, width = shape_hr
        if height % scale or width % scale:
            raise ValueError("shape_hr must be a multiple of scale")
        hr_known = np.asarray(hr_known, dtype=bool).reshape(view_shape)
        attrs = {
            "lfrefsr_layout": LAYOUT_VERSION,
            "lfrefsr_version": __version__,
            "kind": kind.value,
            "axes": list(kind.axes),
            "view_shape": list(view_shape),
            "grid": list(view_shape[-2:]) if kind != Kind.VIDEO else None,
            "channels": channels,
            "scale": int(scale),
            "ref": list(ref) if ref is not None else None,
            "shape_hr": [int(height), int(width)],
            "shape_lr": [int(height // scale), int(width // scale)],
            "dtype": np.dtype(dtype).name,
            "hr_known": hr_known.tolist(),
            "source": str(source),
            **(extra or {}),
        }
        backend = open_backend(path)
        backend.create(attrs)
        ones = (1,) * len(view_shape)
        backend.create_array("hr", (*view_shape, channels, height, width), (*ones, channels, height, width), dtype)
        backend.create_array(
            "lr", (*view_shape, channels, height // scale, width // scale),
            (*ones, channels, height // scale, width // scale), dtype,
        )
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> Store:
        path = Path(path)
        if not path.exists():
            raise StoreError("store not found", path)
        attrs = open_backend(path).read_attrs()
        layout = attrs.get("lfrefsr_layout")
        if layout is None:
            raise StoreError("not an lfrefsr store (no lfrefsr_layout attribute)", path)
        if layout != LAYOUT_VERSION:
            raise StoreError(
                f"unknown store layout version {layout!r} (this lfrefsr {__version__} reads version {LAYOUT_VERSION})",
                path,
            )
        try:
            view_shape = tuple(int(n) for n in attrs["view_shape"])
            return cls(
                path=path,
                kind=Kind(attrs["kind"]),
                view_shape=view_shape,
                channels=int(attrs["channels"]),
                shape_hr=tuple(attrs["shape_hr"]),
                scale=int(attrs["scale"]),
                dtype=np.dtype(attrs["dtype"]),
                ref=tuple(attrs["ref"]) if attrs.get("ref") is not None else None,
                hr_known=np.asarray(attrs["hr_known"], dtype=bool).reshape(view_shape),
                attrs=attrs,
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"malformed store attributes ({type(exc).__name__}: {exc})", path) from None

    # -- metadata -------------------------------------------------------------------------------------------------
    @property
    def backend(self):
        return open_backend(self.path)

    @property
    def axes(self) -> tuple[str, ...]:
        return self.kind.axes

    @property
    def shape_lr(self) -> tuple[int, int]:
        return self.shape_hr[0] // self.scale, self.shape_hr[1] // self.scale

    def views(self) -> list[tuple[int, ...]]:
        """Every view index (u, v), (t,) or (t, u, v), in C order."""
        return [tuple(int(i) for i in index) for index in np.ndindex(*self.view_shape)]

    def array_shape(self, name: str) -> tuple[int, ...]:
        height, width = self.shape_lr if name == "lr" else self.shape_hr
        return (*self.view_shape, self.channels, height, width)

    # -- pixels ---------------------------------------------------------------------------------------------------
    def read(self, name: str, index: tuple[int, ...]) -> np.ndarray:
        """One view or frame (C, H, W) of array ``name`` ("hr", "lr" or "sr/<method>")."""
        if name == "hr" and not self.hr_known[index]:
            raise StoreError(f"no HR data for view {index}", self.path)
        return self.backend.read(name, tuple(index))

    def write(self, name: str, index: tuple[int, ...], data: np.ndarray) -> None:
        if data.shape != self.array_shape(name)[len(self.view_shape):] or data.dtype != self.dtype:
            raise ValueError(f"{name}{index}: got {data.shape} {data.dtype}, store holds {self.array_shape(name)}")
        self.backend.write(name, tuple(index), data)

    def lazy(self, name: str):
        """A dask array over ``name`` whose chunks are the store's chunks; tasks open the file themselves."""
        import dask.array as da

        shape = self.array_shape(name)
        chunks = (1,) * len(self.view_shape) + shape[len(self.view_shape):]
        return da.from_array(_ChunkReader(self, name, shape), chunks=chunks, asarray=False, fancy=False,
                             meta=np.empty((0,) * len(shape), self.dtype), name=f"lfrefsr-{name}-{self.path}")

    def store_lazy(self, name: str, array, *, compute: bool = True):
        """Write a dask array into ``name`` chunk by chunk (each task opens the file itself).

        The array is rechunked to the store's chunks (one per view) first, so no two tasks share a chunk.
        ``compute=False`` returns the dask object to compute later (with other writes, on a cluster).
        """
        import dask.array as da

        shape = self.array_shape(name)
        if tuple(array.shape) != shape:
            raise ValueError(f"{name}: array {tuple(array.shape)} does not match the store's {shape}")
        chunks = (1,) * len(self.view_shape) + shape[len(self.view_shape):]
        return da.store(array.astype(self.dtype).rechunk(chunks), _ChunkWriter(self, name), lock=False,
                        compute=compute)

    # -- results and done-markers ---------------------------------------------------------------------------------
    def ensure_result(self, method: str, settings: dict | None = None, confidence: tuple[str, ...] = ()) -> None:
        """Create ``sr/<method>`` and ``done/<method>`` if absent (and ``confidence/<method>`` with the channels
        named by ``confidence``), and record the run's ``settings`` (the precision that ran, ...) as the result's
        attributes. A resumed run with another value than the views already done records both:
        ``"mixed (bf16, fp32)"``."""
        shape = self.array_shape("sr")
        ones = (1,) * len(self.view_shape)
        self.backend.create_array(f"sr/{method}", shape, (*ones, *shape[len(self.view_shape):]), self.dtype, True)
        self.backend.create_array(f"done/{method}", self.view_shape, ones, "uint8", True)
        if confidence:
            name, height, width = f"confidence/{method}", *self.shape_hr
            self.backend.create_array(name, (*self.view_shape, len(confidence), height, width),
                                      (*ones, len(confidence), height, width), "uint8", True)
            self.backend.update_array_attrs(name, {"channels": list(confidence)})
        if settings:
            earlier = self.result_attrs(method) if self.done(method).any() else {}
            self.backend.update_array_attrs(f"sr/{method}", {key: _merged(earlier.get(key), value)
                                                             for key, value in settings.items()})

    def result_attrs(self, method: str) -> dict:
        """What ``ensure_result`` recorded for ``sr/<method>`` ({} for a result written before it did)."""
        return self.backend.array_attrs(f"sr/{method}") if self.backend.has(f"sr/{method}") else {}

    def write_result(self, method: str, index: tuple[int, ...], sr: np.ndarray,
                     confidence: np.ndarray | None = None) -> None:
        """Data (and the confidence (K, H, W) in [0, 1], stored as uint8) first, then the done-marker."""
        self.write(f"sr/{method}", index, sr)
        if confidence is not None:
            scaled = np.clip(np.rint(np.asarray(confidence, dtype=np.float32) * 255), 0, 255).astype(np.uint8)
            self.backend.write(f"confidence/{method}", tuple(index), scaled)
        self.backend.write(f"done/{method}", tuple(index), 1)

    def confidence_channels(self, method: str) -> list[str]:
        """The channel names of ``confidence/<method>``; [] where the result has no confidence."""
        name = f"confidence/{method}"
        return list(self.backend.array_attrs(name)["channels"]) if self.backend.has(name) else []

    def read_confidence(self, method: str, index: tuple[int, ...]) -> np.ndarray:
        """One view's confidences (K, H, W), float32 in [0, 1]."""
        if not self.confidence_channels(method):
            raise StoreError(f"sr/{method} has no confidence (reconstruct --save-confidence)", self.path)
        return self.backend.read(f"confidence/{method}", tuple(index)).astype(np.float32) / 255

    def done(self, method: str) -> np.ndarray:
        """Boolean over the view dims: which views of ``method`` are finished."""
        if not self.backend.has(f"done/{method}"):
            return np.zeros(self.view_shape, dtype=bool)
        return self.backend.read(f"done/{method}", ...).astype(bool)

    def clear_result(self, method: str) -> None:
        self.backend.delete(f"done/{method}")
        self.backend.delete(f"sr/{method}")
        self.backend.delete(f"confidence/{method}")

    def methods(self) -> list[str]:
        return self.backend.array_names("sr")

    def read_result(self, method: str, index: tuple[int, ...]) -> np.ndarray:
        return self.read(f"sr/{method}", index)


def _merged(earlier, value):
    """A setting of a resumed run: ``value`` where the earlier views had it too, else ``"mixed (a, b)"``."""
    if earlier is None or earlier == value:
        return value
    text = str(earlier)
    seen = set(text[len("mixed ("):-1].split(", ")) if text.startswith("mixed (") else {text}
    seen.add(str(value))
    return f"mixed ({', '.join(sorted(seen))})" if len(seen) > 1 else value


@dataclass(frozen=True)
class _ChunkReader:
    """Array-like that dask slices one chunk at a time; opens the store on each read."""

    store: Store
    name: str
    shape: tuple[int, ...]

    @property
    def dtype(self):
        return self.store.dtype

    @property
    def ndim(self):
        return len(self.shape)

    def __getitem__(self, key):
        return self.store.backend.read(self.name, key)


@dataclass(frozen=True)
class _ChunkWriter:
    """Target for ``dask.array.store``: writes one region per call, opening the store each time."""

    store: Store
    name: str

    def __setitem__(self, key, value):
        self.store.backend.write(self.name, key, value)
