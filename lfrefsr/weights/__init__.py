"""Weights that ship with the package, checked against recorded sha256 sums, and loading of user checkpoints.

Every file is read with ``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, so a
malicious pickle cannot run code. ``manifest.json`` records each shipped file's sha256, the config and the command
that produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lfrefsr.errors import LfrefsrError

HERE = Path(__file__).parent
MANIFEST = HERE / "manifest.json"


def manifest() -> dict:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def shipped_path(name: str) -> Path:
    entry = manifest().get(name)
    if entry is None:
        raise LfrefsrError(f"no shipped weights for {name!r} in this installation", MANIFEST)
    return HERE / entry["file"]


def verify(name: str) -> Path:
    """The shipped file for ``name`` after checking its sha256 against the manifest."""
    from lfrefsr.training.common import sha256

    path = shipped_path(name)
    expected = manifest()[name]["sha256"]
    if not path.exists():
        raise LfrefsrError("shipped weights missing", path)
    if sha256(path) != expected:
        raise LfrefsrError(f"shipped weights do not match their recorded sha256 {expected[:12]}...", path)
    return path


def describe(name_or_path: str) -> dict:
    """{"name", "sha256"} of a shipped network (its manifest name) or of a weights file (its path), as the eval
    JSON records the networks a method loaded."""
    from lfrefsr.training.common import sha256

    entry = manifest().get(name_or_path)
    if entry is not None:
        return {"name": name_or_path, "sha256": entry["sha256"]}
    path = Path(name_or_path)
    return {"name": str(path), "sha256": sha256(path) if path.is_file() else None}


def load_file(path: str | Path) -> dict:
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LfrefsrError("weights file not found", path) from None
    except Exception as exc:
        raise LfrefsrError(f"not a loadable weights file ({type(exc).__name__}; only plain tensors are accepted)",
                           path) from None
    if not isinstance(state, dict) or "state_dict" not in state or "model_config" not in state:
        raise LfrefsrError("not an lfrefsr weights file (no model_config/state_dict)", path)
    return state


def load_network(kind: str, weights: str | Path | None = None, device: str = "cpu", shipped: str | None = None):
    """(model in eval mode, the weights file's dict) for network ``kind`` (ccnet, sisr, ssnet) from ``weights`` or
    the shipped file ``shipped`` (default: ``kind``). A file of another architecture is refused with one line.
    The model is for inference (``prepare_for_inference``: BatchNorm folded, the CPU kernels swapped in,
    channels-last weights); it computes what the plain network with these weights computes."""
    from lfrefsr.models import build_model
    from lfrefsr.models.inference import prepare_for_inference

    path = Path(weights) if weights is not None else verify(shipped or kind)
    state = load_file(path)
    expected = {"ccnet": "ccnet", "sisr": "srresnet", "ssnet": "ssnet"}[kind]
    found = state["model_config"].get("name")
    if found != expected:
        raise LfrefsrError(f"weights are for {found!r}, not {expected!r}", path)
    model = build_model(state["model_config"])
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as exc:
        raise LfrefsrError(f"weights do not fit the {expected} architecture ({str(exc).splitlines()[0]})",
                           path) from None
    return prepare_for_inference(model.to(device=device)), state


def load_ccnet(weights: str | Path | None = None, device: str = "cpu"):
    """(CC-Net in eval mode, its reference input mode) from ``weights`` or the shipped CC-Net."""
    model, state = load_network("ccnet", weights, device)
    return model, state.get("reference_input", "hr")


def ship(kind: str, source: str | Path, *, config: str, command: str) -> Path:
    """Copy a trained ``weights.pt`` into the package and record its sha256, config (the recipe's path), the
    recipe as it trained (``trained_config``, with its ``base:`` merged; tests/test_recipes.py compares the recipe
    with it) and command."""
    import shutil

    from lfrefsr.training.common import load_config, sha256

    state = load_file(source)  # refuse anything that would not load
    target = HERE / f"{kind}.pt"
    shutil.copyfile(source, target)
    entries = manifest()
    entries[kind] = {"file": target.name, "sha256": sha256(target), "config": config, "command": command,
                     "meta": state.get("meta", {}), "trained_config": load_config(config)}
    from lfrefsr.io.atomic import write_text

    write_text(MANIFEST, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return target
