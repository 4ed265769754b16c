"""``eval match``: cross-scale matching accuracy (the paper's Table 2) on pairs with ground-truth flow.

A pair folder holds ``target.png``, ``reference.png``, ``flow.flo`` (target -> reference) and optionally
``valid.png`` (non-zero = evaluate). The target is degraded by the protocol; every method matches the LR target
against the HR reference. A centre (on the ``scale`` grid) counts where it is valid and its rounded true position
lies inside the reference and within the search range; a match is correct within ``t`` pixels when its Euclidean
distance to that position is at most ``t`` (HR pixels).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lfrefsr import protocol
from lfrefsr.correspondence.matchers import get_matcher
from lfrefsr.errors import InputError
from lfrefsr.io.flow import read_flo
from lfrefsr.io.images import read_image

THRESHOLDS = tuple(range(7))
PAIR_FILES = ("target.png", "reference.png", "flow.flo")


def pair_folders(paths) -> list[Path]:
    """Each path is a pair folder, or a folder of pair folders."""
    found = []
    for path in map(Path, paths):
        if all((path / name).is_file() for name in PAIR_FILES):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
        pairs = [p for p in children if all((p / name).is_file() for name in PAIR_FILES)]
        if not pairs:
            missing = [name for name in PAIR_FILES if not (path / name).is_file()]
            raise InputError(f"not a match pair folder (missing {', '.join(missing)})", path)
        found.extend(pairs)
    return found


def load_pair(folder: Path, scale: int) -> dict:
    target = protocol.to_float(read_image(folder / "target.png"))
    ref = protocol.to_float(read_image(folder / "reference.png"))
    flow = torch.from_numpy(read_flo(folder / "flow.flo"))
    if flow.shape[1:] != target.shape[1:]:
        raise InputError(f"flow is {flow.shape[1]}x{flow.shape[2]}, target {target.shape[1]}x{target.shape[2]}",
                         folder / "flow.flo")
    valid = torch.ones(target.shape[1:], dtype=torch.bool)
    if (folder / "valid.png").is_file():
        valid = torch.from_numpy(read_image(folder / "valid.png")[0] > 0)
    protocol.check_scale(scale, tuple(target.shape[1:]), folder / "target.png")
    crop = lambda x: protocol.crop_to_multiple(x, scale)  # noqa: E731
    return {"target": crop(target), "ref": crop(ref), "flow": crop(flow), "valid": crop(valid)}


def score_matches(position: torch.Tensor, pair: dict, scale: int, search_range: int) -> dict:
    """Hits per threshold and the number of evaluated centres for one pair's matches (2, Ny, Nx)."""
    flow, valid = pair["flow"][:, ::scale, ::scale], pair["valid"][::scale, ::scale]
    rows, cols = valid.shape
    gy, gx = torch.meshgrid(torch.arange(rows) * scale, torch.arange(cols) * scale, indexing="ij")
    true_x, true_y = (gx + flow[0]).round(), (gy + flow[1]).round()
    height, width = pair["ref"].shape[1:]
    counted = valid & (true_x >= 0) & (true_x < width) & (true_y >= 0) & (true_y < height)
    counted &= ((true_x - gx).abs() <= search_range) & ((true_y - gy).abs() <= search_range)
    distance = torch.hypot(position[0] - true_x, position[1] - true_y)[counted]
    return {"n": int(counted.sum()), "hits": {t: int((distance <= t + 1e-6).sum()) for t in THRESHOLDS},
            "offsets": torch.stack([position[0] - true_x, position[1] - true_y])[:, counted]}


def evaluate_match(pair_dirs, methods, *, scale=8, search_range=100, weights=None, device="cpu",
                   precision="fp32", aggregate: int | None = None, progress=True) -> dict:
    """``aggregate``: CC-Net's aggregation size (None: the matcher's default; 1: the paper's per-centre argmax);
    the baselines never aggregate, as in the paper's Table 2."""
    from lfrefsr.capability import effective_precision

    precision = effective_precision(precision, device)  # what runs, recorded below
    folders = pair_folders(pair_dirs)
    pairs = {folder: load_pair(folder, scale) for folder in folders}
    result = {"kind": "match", "scale": scale, "search_range": search_range, "precision": precision,
              "pairs": [str(f) for f in folders], "methods": {}}
    for name in methods:
        options = {}
        if name == "ccnet":
            options = {"weights": weights, "precision": precision}
            if aggregate is not None:
                options["aggregate"] = aggregate
        matcher = get_matcher(name, scale=scale, search_range=search_range, device=device, **options)
        total = {"n": 0, "hits": {t: 0 for t in THRESHOLDS}}
        per_pair, started = {}, time.perf_counter()
        for folder, pair in tqdm(pairs.items(), desc=name, unit="pair", disable=not progress):
            lr = protocol.stored_lr(pair["target"], scale)  # an 8-bit LR image, as stored
            matches = matcher.match(lr, matcher.prepare(pair["ref"]))
            scores = score_matches(matches.position.float().cpu(), pair, scale, search_range)
            total["n"] += scores["n"]
            for t in THRESHOLDS:
                total["hits"][t] += scores["hits"][t]
            per_pair[folder.name] = _accuracy(scores)
        result["methods"][name] = {**_accuracy(total), "seconds": time.perf_counter() - started,
                                   "aggregate": getattr(matcher, "aggregate", 1), "per_pair": per_pair}
    return result


def _accuracy(scores: dict) -> dict:
    n = scores["n"]
    return {"n": n, "acc": {str(t): 100.0 * scores["hits"][t] / n if n else float("nan") for t in THRESHOLDS}}


def table(result: dict) -> str:
    head = "method".ljust(12) + "".join(f"{'<=' + str(t):>7}" for t in THRESHOLDS) + "       n"
    lines = [head]
    for name, row in result["methods"].items():
        lines.append(name.ljust(12) + "".join(f"{row['acc'][str(t)]:>7.1f}" for t in THRESHOLDS) + f"{row['n']:>8}")
    return "\n".join(lines)
