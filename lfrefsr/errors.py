"""User-facing errors: the CLI prints them as one line (no traceback unless -v) and exits non-zero."""

from __future__ import annotations

from pathlib import Path


class LfrefsrError(Exception):
    """A problem with the user's input or environment, described in one line.

    ``path`` names the file or folder at fault, so the message always says where to look.
    """

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:
        msg = super().__str__()
        return f"{msg}: {self.path}" if self.path else msg


class InputError(LfrefsrError):
    """Malformed or unusable input data."""


class StoreError(LfrefsrError):
    """A store that is missing, corrupted, of an unknown layout, or would be overwritten."""
