"""Light-field folder layouts (SPEC): which file holds view (u, v).

Auto-detected layouts::

    hci      input_CamNNN.png      index, row-major square grid, 0-based
    view     view_UU_VV.png        0-based
    lytro    NAME_UU_VV.png        1-based (as Lytro decoders write)

``pattern`` with ``{u}``/``{v}`` or ``{index}`` fields (and ``index_base``) covers any other naming.
Non-matching files (licences, disparity maps, ...) are ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from lfrefsr.errors import InputError
from lfrefsr.io.images import is_image_name

_AUTO_LAYOUTS: tuple[tuple[str, str, int], ...] = (
    # name, regular expression on the file name, index base
    ("hci", r"input_Cam(?P<index>\d+)\.png", 0),
    ("view", r"view_(?P<u>\d+)_(?P<v>\d+)\.\w+", 0),
    ("lytro", r"(?!view_)[^/]*?_(?P<u>\d+)_(?P<v>\d+)\.\w+", 1),
)


@dataclass(frozen=True)
class LightFieldFiles:
    """The files of one capture: ``files[(u, v)]`` for the full grid found in the folder."""

    folder: Path
    layout: str
    rows: int
    cols: int
    files: dict

    def cut(self, grid: tuple[int, int] | None, origin: tuple[int, int]) -> LightFieldFiles:
        """The sub-grid ``grid`` starting at ``origin``, re-indexed from (0, 0)."""
        rows, cols = grid if grid is not None else (min(8, self.rows), min(8, self.cols))
        u0, v0 = origin
        if rows < 1 or cols < 1 or u0 < 0 or v0 < 0:
            raise InputError(f"invalid grid {rows}x{cols} at origin {u0},{v0}", self.folder)
        if u0 + rows > self.rows or v0 + cols > self.cols:
            raise InputError(
                f"grid {rows}x{cols} at origin {u0},{v0} is larger than the data ({self.rows}x{self.cols} views)",
                self.folder,
            )
        files = {(u, v): self.files[(u + u0, v + v0)] for u in range(rows) for v in range(cols)}
        return LightFieldFiles(self.folder, self.layout, rows, cols, files)


def _pattern_regex(pattern: str) -> re.Pattern:
    if not any(f"{{{name}}}" in pattern for name in ("u", "v", "index")):
        raise InputError(f"pattern {pattern!r} needs {{u}} and {{v}} fields, or {{index}}")
    if ("{u}" in pattern) != ("{v}" in pattern):
        raise InputError(f"pattern {pattern!r} needs both {{u}} and {{v}}")
    if "/" in pattern or "\\" in pattern or ".." in pattern:
        raise InputError(f"pattern {pattern!r} must name files inside the folder (no separators or '..')")
    regex = re.escape(pattern)
    for name in ("u", "v", "index"):
        regex = regex.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>\\d+)")
    return re.compile(regex)


def _match(names: list[str], regex: re.Pattern, base: int) -> dict:
    """File name -> (u, v) or (index,) for every name the regex matches in full."""
    found = {}
    for name in names:
        match = regex.fullmatch(name)
        if match:
            groups = match.groupdict()
            if "index" in groups and groups["index"] is not None:
                found[name] = (int(groups["index"]) - base,)
            else:
                found[name] = (int(groups["u"]) - base, int(groups["v"]) - base)
    return found


def detect(folder: str | Path, *, pattern: str | None = None, index_base: int | None = None) -> LightFieldFiles:
    """Find the layout and the full grid of a capture folder; refuses missing views and ambiguous names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", folder)
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    if pattern is not None:
        candidates = [("pattern", _pattern_regex(pattern), 0 if index_base is None else index_base)]
    else:
        candidates = [(name, re.compile(regex), base if index_base is None else index_base)
                      for name, regex, base in _AUTO_LAYOUTS]
    best = max(((name, _match(names, regex, base)) for name, regex, base in candidates), key=lambda x: len(x[1]))
    layout, found = best
    if not found:
        images = [n for n in names if is_image_name(n)]
        what = f"{len(images)} image files, none named like" if images else "no light-field views named like"
        raise InputError(
            f"{what} input_CamNNN.png, view_UU_VV.png or NAME_UU_VV.png (use --pattern)", folder
        )
    if any(min(key) < 0 for key in found.values()):
        raise InputError("a view index is below --index-base", folder)
    if all(len(key) == 1 for key in found.values()):  # index layouts: a row-major square grid
        count = max(key[0] for key in found.values()) + 1
        side = math.isqrt(count)
        if side * side != count:
            raise InputError(f"{count} indexed views do not form a square grid (use a {{u}}_{{v}} pattern)", folder)
        found = {name: divmod(key[0], side) for name, key in found.items()}
    files = {}
    for name, key in found.items():
        if key in files:
            raise InputError(f"two files for view {key}: {files[key].name} and {name}", folder / name)
        files[key] = folder / name
    rows = max(u for u, _ in files) + 1
    cols = max(v for _, v in files) + 1
    missing = [(u, v) for u in range(rows) for v in range(cols) if (u, v) not in files]
    if missing:
        raise InputError(f"{len(missing)} view(s) missing from the {rows}x{cols} grid, first {missing[0]}", folder)
    return LightFieldFiles(folder, layout, rows, cols, files)


def is_capture_folder(folder: Path, **kwargs) -> bool:
    try:
        detect(folder, **kwargs)
    except InputError:
        return False
    return True
