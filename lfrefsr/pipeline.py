"""Reconstruction of stores: which view is super-resolved from which reference, and the in-process engine.

``plan`` turns stores into tasks (target view, reference view). ``run_serial`` executes them in this process,
preparing each reference once and writing every result with its done-marker as soon as it is ready, so a rerun
resumes where a killed run stopped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from lfrefsr import protocol
from lfrefsr.axes import Kind
from lfrefsr.errors import InputError, LfrefsrError
from lfrefsr.io.store import Store
from lfrefsr.methods import Method, ViewHint, get_method
from lfrefsr.modes import ReferenceMode


@dataclass(frozen=True)
class Task:
    store: Store
    target: tuple[int, ...]
    reference: tuple[int, ...]
    hint: ViewHint = field(default_factory=ViewHint)

    @property
    def label(self) -> str:
        return f"{self.store.path.name}{list(self.target)}"


def plan(
    store: Store,
    *,
    reference_mode: ReferenceMode = ReferenceMode.PREVIOUS,
    ref: tuple[int, int] | None = None,
    views: Iterable[tuple[int, ...]] | None = None,
) -> list[Task]:
    """Every non-reference view (light field, per time step for light-field video) or frame t >= 1 (video)."""
    tasks = []
    if store.kind == Kind.VIDEO:
        for (t,) in store.views():
            if t == 0 or (reference_mode == ReferenceMode.KEYFRAME and store.hr_known[t]):
                continue  # frame 0 has no earlier frame; in keyframe mode a keyframe is its own HR
            if reference_mode == ReferenceMode.PREVIOUS:
                reference = t - 1
                if not store.hr_known[reference]:
                    raise InputError(
                        f"frame {reference} has no HR (keyframes only): use --reference keyframe", store.path
                    )
            else:
                known = [s for s in range(t) if store.hr_known[s]]
                if not known:
                    raise InputError(f"no HR keyframe before frame {t}", store.path)
                reference = known[-1]
            tasks.append(Task(store, (t,), (reference,), ViewHint(frame_offset=t - reference)))
    else:
        ref = tuple(ref) if ref is not None else tuple(store.ref)
        rows, cols = store.view_shape[-2:]
        if not (0 <= ref[0] < rows and 0 <= ref[1] < cols):
            raise InputError(f"reference view {ref[0]},{ref[1]} is outside the {rows}x{cols} grid", store.path)
        for index in store.views():
            u, v = index[-2:]
            if (u, v) == ref:
                continue
            reference = (*index[:-2], *ref)
            if not store.hr_known[reference]:
                raise InputError(f"no HR data for the reference view {list(reference)}", store.path)
            tasks.append(Task(store, index, reference, ViewHint(grid_offset=(u - ref[0], v - ref[1]))))
    if views is not None:
        wanted = {tuple(v) for v in views}
        tasks = [task for task in tasks if task.target in wanted]
    return tasks


def run_task(method: Method, task: Task, context) -> "numpy.ndarray":  # noqa: F821
    """Super-resolve one view: read its LR chunk, run the method, quantise to the store's dtype."""
    lr = protocol.to_float(task.store.read("lr", task.target), task.store.dtype)
    with torch.inference_mode():
        sr = method.super_resolve(lr, context, task.hint)
    return protocol.quantize(sr, task.store.dtype)


def read_reference(task: Task) -> torch.Tensor:
    return protocol.to_float(task.store.read("hr", task.reference), task.store.dtype)


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def views_per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        text = f"{self.done} views done, {self.skipped} already done, {self.seconds:.1f} s, {self.views_per_second:.2f} views/s"
        if self.failed:
            text += f"; FAILED: {', '.join(label for label, _ in self.failed)}"
        return text


def run_serial(
    tasks: list[Task],
    method_name: str,
    *,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    method_options: dict | None = None,
) -> Summary:
    """Run ``tasks`` in this process; results and done-markers reach the store as each view finishes."""
    stores = {task.store.path: task.store for task in tasks}
    scales = {store.scale for store in stores.values()}
    summary = Summary()
    start = time.perf_counter()
    for store in stores.values():
        if overwrite:
            store.clear_result(method_name)
        store.ensure_result(method_name)
    done = {path: store.done(method_name) for path, store in stores.items()}
    todo = [task for task in tasks if not done[task.store.path][task.target]]
    summary.skipped = len(tasks) - len(todo)
    methods = {scale: get_method(method_name, scale=scale, device=device, **(method_options or {})) for scale in scales}
    cached_key, context = None, None
    for task in tqdm(todo, desc=method_name, unit="view", disable=not progress):
        method = methods[task.store.scale]
        try:
            key = (task.store.path, task.reference)
            if key != cached_key:  # tasks are grouped by reference: prepare each reference once
                context, cached_key = method.prepare(read_reference(task)), key
            task.store.write_result(method_name, task.target, run_task(method, task, context))
            summary.done += 1
        except LfrefsrError as exc:
            summary.failed.append((task.label, str(exc)))
    summary.seconds = time.perf_counter() - start
    return summary
