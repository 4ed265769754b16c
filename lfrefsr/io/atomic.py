"""Atomic writes: every non-chunk file is written to a temporary sibling, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside ``path`` that keeps its suffix (the suffix selects the store backend)."""
    return path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure remove it.

    Works for files and for directories (a zarr store): an existing target directory is replaced.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if path.is_dir() and tmp.is_dir():
            old = temporary_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        remove(tmp)
        if isinstance(exc, OSError) and exc.filename and str(tmp) in str(exc.filename):
            exc.filename = str(path)  # name the user's output, not our temporary sibling
        raise


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
