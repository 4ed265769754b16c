"""What every training loop shares: configs, resumable checkpoints, a time-based checkpoint clock, a CSV log."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from lfrefsr.errors import InputError
from lfrefsr.io.atomic import atomic_path

log = logging.getLogger("lfrefsr.train")


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


def initial_model(config: dict) -> torch.nn.Module:
    """The network of ``config["model"]``, its initial weights drawn from ``train.seed``: unseeded, two runs of one
    recipe started from different weights (train_loop seeds again, so the data stream is unchanged). With ``init``
    (fine-tuning), the weights of that file instead, of the same architecture."""
    from lfrefsr.models import build_model

    torch.manual_seed(int(config["train"].get("seed", 0)))
    model = build_model(config["model"])
    if config.get("init"):
        from lfrefsr.weights import load_file

        model.load_state_dict(load_file(config["init"])["state_dict"])
    return model


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


def _optimiser(model: torch.nn.Module, parameters, train_cfg: dict):
    """Adam at ``lr``, decayed exponentially to ``lr_final`` over ``steps``: (optimiser, schedule)."""
    optimizer = torch.optim.Adam(parameters if parameters is not None else model.parameters(),
                                 lr=float(train_cfg["lr"]))
    steps = int(train_cfg["steps"])
    decay = float(train_cfg.get("lr_final", train_cfg["lr"])) / float(train_cfg["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: decay ** (k / max(steps, 1)))
    return optimizer, scheduler


def _resume(checkpoint: Path, model, optimizer, scheduler, name: str) -> tuple[int, float, np.random.Generator]:
    """Restores the model, optimiser, schedule and torch RNG saved in ``checkpoint``; (step, seconds trained, the
    data generator) to continue from."""
    state = load_checkpoint(checkpoint)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resumed %s at step %d (%.0f s trained)", name, int(state["step"]), float(state["elapsed"]))
    return int(state["step"]), float(state["elapsed"]), restore_rng(state["rng"])


class _StepLog:
    """``log.csv``: each field's mean over the steps since the last row, a row every ``log_every`` steps and at the
    last step of the run; the progress bar shows the loss of each row."""

    def __init__(self, out: Path, train_cfg: dict):
        self.fields = list(train_cfg.get("log_fields", ["loss", "acc0", "acc1", "n"]))
        self.every = int(train_cfg.get("log_every", 25))
        self.file = CsvLog(out / "log.csv", ["step", "seconds", *self.fields, "lr"])
        self.running: list[dict] = []

    def add(self, step: int, stop: int, elapsed: float, lr: float, loss: torch.Tensor, stats: dict, bar) -> None:
        self.running.append({"loss": float(loss.detach()), **stats})
        if step % self.every == 0 or step == stop:
            means = {f: float(np.mean([r[f] for r in self.running if f in r])) for f in self.fields}
            self.file.write(step=step, seconds=round(elapsed, 1), lr=lr, **{k: round(v, 5) for k, v in means.items()})
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            self.running = []


def train_loop(config: dict, out, model: torch.nn.Module, step_fn, *, name: str, resume: bool = False,
               progress: bool = True, max_steps: int | None = None, export=None, parameters=None,
               device: str = "cpu") -> Path:
    """The loop every network shares: Adam with exponential decay from ``lr`` to ``lr_final``, a checkpoint every
    ``checkpoint_minutes`` (model, optimiser, schedule, step, RNG states), ``--resume``, a CSV log, and
    ``export(path, steps=, seconds=)`` once the configured steps are done.

    ``step_fn(rng) -> (loss, stats)`` draws its own data, on the CPU from the numpy generator (so a run's data does
    not depend on its ``device``), and moves its batch to the model's device; stats hold ``acc0``/``acc1``/``n`` or
    any numbers. The model is moved to ``device`` before its optimiser is made; checkpoints load onto the CPU and
    follow the model, so a run may resume on another device.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_cfg = config["train"]
    torch.set_num_threads(int(train_cfg.get("threads", torch.get_num_threads())))
    rng = seed_everything(int(train_cfg.get("seed", 0)))
    model.to(device)
    optimizer, scheduler = _optimiser(model, parameters, train_cfg)
    steps, step, elapsed = int(train_cfg["steps"]), 0, 0.0
    checkpoint = out / "last.pt"
    if resume and checkpoint.exists():
        step, elapsed, rng = _resume(checkpoint, model, optimizer, scheduler, name)
    step_log = _StepLog(out, train_cfg)
    clock = Clock(float(train_cfg.get("checkpoint_minutes", 3)))

    def save():
        save_checkpoint(checkpoint, model=model.state_dict(), optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), step=step, elapsed=elapsed, rng=rng_state(rng),
                        torch_rng=torch.get_rng_state(), config=config)

    stop = steps if max_steps is None else min(steps, step + max_steps)
    model.train()
    bar = tqdm(total=stop, initial=step, desc=name, unit="step", disable=not progress)
    while step < stop:
        started = time.perf_counter()
        loss, stats = step_fn(rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        elapsed += time.perf_counter() - started
        step_log.add(step, stop, elapsed, scheduler.get_last_lr()[0], loss, stats, bar)
        if clock.due():
            save()
        bar.update(1)
    bar.close()
    save()
    if step >= steps and export is not None:
        export(out / "weights.pt", steps=step, seconds=elapsed)
    return out
