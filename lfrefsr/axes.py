"""Named axes, declared once and recorded in every store's attributes.

Code looks axes up by name (``axes.index("y")``) instead of guessing ``shape[3]``.
"""

from __future__ import annotations

from enum import Enum

IMAGE_AXES: tuple[str, ...] = ("c", "y", "x")
LF_AXES: tuple[str, ...] = ("u", "v", "c", "y", "x")
VIDEO_AXES: tuple[str, ...] = ("t", "c", "y", "x")
LFVIDEO_AXES: tuple[str, ...] = ("t", "u", "v", "c", "y", "x")


class Kind(str, Enum):
    """What a store holds; the value is the attribute written to the store."""

    LF = "lf"
    VIDEO = "video"
    LFVIDEO = "lfvideo"

    @property
    def axes(self) -> tuple[str, ...]:
        return {Kind.LF: LF_AXES, Kind.VIDEO: VIDEO_AXES, Kind.LFVIDEO: LFVIDEO_AXES}[self]

    @property
    def view_axes(self) -> tuple[str, ...]:
        """The leading axes that index one view or frame (everything before ``c``)."""
        return self.axes[: self.axes.index("c")]


def axis(axes: tuple[str, ...], name: str) -> int:
    """Position of a named axis, with a clear error for a missing one."""
    try:
        return axes.index(name)
    except ValueError:
        raise KeyError(f"axis {name!r} not in {axes}") from None
