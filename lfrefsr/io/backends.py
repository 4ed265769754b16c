"""The file formats behind a store (``lfrefsr.io.store``): zarr v3 (default, a directory) or HDF5 (a ``.h5`` /
``.hdf5`` file), each offering the minimum a store needs. Every call opens and closes the file, so backends are
small and picklable."""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

import numpy as np

from lfrefsr.errors import StoreError

HDF5_SUFFIXES = (".h5", ".hdf5")


def backend_for(path: str | Path) -> str:
    return "hdf5" if Path(path).suffix.lower() in HDF5_SUFFIXES else "zarr"


class ZarrBackend:
    def __init__(self, path: Path):
        self.path = path

    def _group(self, mode: str):
        import zarr

        try:
            return zarr.open_group(str(self.path), mode=mode)
        except FileNotFoundError:
            raise StoreError("store not found", self.path) from None
        except Exception as exc:
            raise StoreError(f"corrupted or unreadable zarr store ({type(exc).__name__}: {exc})", self.path) from None

    def create(self, attrs: dict) -> None:
        group = self._group("w")
        group.attrs.update(attrs)

    def read_attrs(self) -> dict:
        if not self.path.exists():
            raise StoreError("store not found", self.path)
        return dict(self._group("r").attrs)

    def update_attrs(self, attrs: dict) -> None:
        self._group("r+").attrs.update(attrs)

    def create_array(self, name: str, shape, chunks, dtype, exist_ok: bool = False) -> None:
        group = self._group("r+")
        parent, _, leaf = name.rpartition("/")
        target = group.require_group(parent) if parent else group
        if exist_ok and leaf in target:
            return
        target.create_array(leaf, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0)

    def array_attrs(self, name: str) -> dict:
        return dict(self._group("r")[name].attrs)

    def update_array_attrs(self, name: str, attrs: dict) -> None:
        self._group("r+")[name].attrs.update(attrs)

    def has(self, name: str) -> bool:
        return name in self._group("r")

    def array_names(self, prefix: str) -> list[str]:
        group = self._group("r")
        if prefix not in group:
            return []
        return sorted(group[prefix].array_keys())

    def read(self, name: str, index) -> np.ndarray:
        group = self._group("r")
        try:
            return np.asarray(group[name][index])
        except KeyError:
            raise StoreError(f"array {name!r} missing", self.path) from None
        except Exception as exc:
            raise StoreError(f"corrupted chunk in {name!r} at {index} ({type(exc).__name__}: {exc})",
                             self.path) from None

    def write(self, name: str, index, data) -> None:
        self._group("r+")[name][index] = data

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._group("r")[name].shape)

    def chunks(self, name: str) -> tuple[int, ...]:
        return tuple(self._group("r")[name].chunks)

    def delete(self, name: str) -> None:
        group = self._group("r+")
        if name in group:
            del group[name]

    def resize_leading(self, names, frames: int) -> None:
        """Change the frame count (the leading dim) of arrays ``names``."""
        group = self._group("r+")
        for name in names:
            group[name].resize((frames, *group[name].shape[1:]))


class HDF5Backend:
    """HDF5 allows no concurrent writers, so every access holds an advisory lock on a hidden sidecar file."""

    def __init__(self, path: Path):
        self.path = path

    @contextlib.contextmanager
    def _file(self, mode: str):
        import h5py

        if mode != "w" and not self.path.is_file():
            raise StoreError("store not found", self.path)
        lock_path = _lock_path(self.path)
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH if mode == "r" else fcntl.LOCK_EX)
            try:
                handle = h5py.File(self.path, mode, locking=False)
            except OSError as exc:
                raise StoreError(f"corrupted or unreadable HDF5 file ({exc})", self.path) from None
            try:
                yield handle
            finally:
                handle.close()

    def create(self, attrs: dict) -> None:
        with self._file("w") as handle:
            handle.attrs["lfrefsr"] = json.dumps(attrs)

    def read_attrs(self) -> dict:
        with self._file("r") as handle:
            if "lfrefsr" not in handle.attrs:
                return {}
            return json.loads(handle.attrs["lfrefsr"])

    def update_attrs(self, attrs: dict) -> None:
        with self._file("r+") as handle:
            current = json.loads(handle.attrs.get("lfrefsr", "{}"))
            current.update(attrs)
            handle.attrs["lfrefsr"] = json.dumps(current)

    def create_array(self, name: str, shape, chunks, dtype, exist_ok: bool = False) -> None:
        with self._file("r+") as handle:
            if exist_ok and name in handle:
                return
            handle.create_dataset(
                name, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fillvalue=0,
                maxshape=(None, *tuple(shape)[1:]),  # the frame count of a video is fixed after decoding
                compression="gzip", compression_opts=1,
            )

    def array_attrs(self, name: str) -> dict:
        with self._file("r") as handle:
            return json.loads(handle[name].attrs.get("lfrefsr", "{}"))

    def update_array_attrs(self, name: str, attrs: dict) -> None:
        with self._file("r+") as handle:
            current = json.loads(handle[name].attrs.get("lfrefsr", "{}"))
            current.update(attrs)
            handle[name].attrs["lfrefsr"] = json.dumps(current)

    def has(self, name: str) -> bool:
        with self._file("r") as handle:
            return name in handle

    def array_names(self, prefix: str) -> list[str]:
        with self._file("r") as handle:
            return sorted(handle[prefix].keys()) if prefix in handle else []

    def read(self, name: str, index) -> np.ndarray:
        with self._file("r") as handle:
            if name not in handle:
                raise StoreError(f"array {name!r} missing", self.path)
            try:
                return np.asarray(handle[name][index])
            except Exception as exc:
                raise StoreError(f"corrupted chunk in {name!r} at {index} ({exc})", self.path) from None

    def write(self, name: str, index, data) -> None:
        with self._file("r+") as handle:
            handle[name][index] = data

    def shape(self, name: str) -> tuple[int, ...]:
        with self._file("r") as handle:
            return tuple(handle[name].shape)

    def chunks(self, name: str) -> tuple[int, ...]:
        with self._file("r") as handle:
            return tuple(handle[name].chunks)

    def delete(self, name: str) -> None:
        with self._file("r+") as handle:
            if name in handle:
                del handle[name]

    def resize_leading(self, names, frames: int) -> None:
        """Change the frame count (the leading dim) of arrays ``names``: their ``maxshape`` leaves it open."""
        with self._file("r+") as handle:
            for name in names:
                handle[name].resize(frames, axis=0)


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def remove_lock(path: Path) -> None:
    """Remove the HDF5 sidecar lock of a store that is no longer used (a renamed temporary one)."""
    if backend_for(path) == "hdf5":
        _lock_path(path).unlink(missing_ok=True)


def open_backend(path: Path):
    """The backend of the store at ``path``, by its suffix."""
    return HDF5Backend(path) if backend_for(path) == "hdf5" else ZarrBackend(path)
