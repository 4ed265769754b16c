"""What every training loop shares: configs, resumable checkpoints, a time-based checkpoint clock, a CSV log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lfrefsr.errors import InputError
from lfrefsr.io.atomic import atomic_path


def load_config(path: str | Path) -> dict:
    """A YAML config through ``yaml.safe_load``; ``base:`` names a config (relative path) it overrides."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError("config not found", path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(config, dict):
        raise InputError("a config must be a mapping", path)
    if "base" in config:
        base = load_config(path.parent / config.pop("base"))
        config = _merge(base, config)
    return config


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def save_checkpoint(path: Path, **state) -> None:
    """Atomic: a killed run leaves the previous checkpoint intact."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Checkpoints hold tensors, numbers, strings and containers only: ``weights_only=True`` refuses anything else."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("checkpoint not found", path) from None
    except Exception as exc:
        raise InputError(f"not a loadable lfrefsr checkpoint ({type(exc).__name__})", path) from None


def rng_state(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def restore_rng(state: str) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(state)
    return rng


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Clock:
    """Says when ``minutes`` have passed since the last tick (checkpoints go by time, not steps)."""

    def __init__(self, minutes: float):
        self.period, self.last = minutes * 60.0, time.monotonic()

    def due(self) -> bool:
        if time.monotonic() - self.last >= self.period:
            self.last = time.monotonic()
            return True
        return False


class CsvLog:
    def __init__(self, path: Path, fields: list[str]):
        self.path, self.fields = path, fields
        if not path.exists():
            with open(path, "w", newline="") as handle:
                csv.writer(handle).writerow(fields)

    def write(self, **row) -> None:
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow([row.get(f, "") for f in self.fields])


def state_dict_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()
