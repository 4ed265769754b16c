"""Reconstruction of stores: which view is super-resolved from which reference, and the in-process engine.

``plan`` turns stores into tasks (target view, reference view). ``run_serial`` executes them in this process,
preparing each reference once and writing every result with its done-marker as soon as it is ready, so a rerun
resumes where a killed run stopped.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from tqdm.auto import tqdm

from lfrefsr import protocol
from lfrefsr.axes import Kind
from lfrefsr.capability import effective_precision
from lfrefsr.errors import InputError, LfrefsrError
from lfrefsr.io.store import Store
from lfrefsr.methods import Method, ViewHint, get_method, method_class, network_names
from lfrefsr.modes import Precision, ReferenceMode

log = logging.getLogger("lfrefsr")


@dataclass(frozen=True)
class Task:
    """One view or frame to super-resolve: where its LR chunk is, and which array holds its reference."""

    store: Store
    target: tuple[int, ...]
    reference: tuple[int, ...]
    hint: ViewHint = field(default_factory=ViewHint)
    reference_array: str = "hr"  # "sr/<method>" when the reference is an earlier result (previous-sr)
    # a second HR reference on the other side of the target (keyframes mode: the first keyframe after it)
    next_reference: tuple[int, ...] | None = None
    next_hint: ViewHint | None = None

    @property
    def label(self) -> str:
        return f"{self.store.path.name}{list(self.target)}"


def plan(
    store: Store,
    *,
    reference_mode: ReferenceMode = ReferenceMode.PREVIOUS,
    ref: tuple[int, int] | None = None,
    views: Iterable[tuple[int, ...]] | None = None,
    keyframe_every: int | None = None,
) -> list[Task]:
    """Every non-reference view (light field, per time step for light-field video) or frame t >= 1 (video).
    ``keyframe_every`` (video, ``keyframe`` and ``keyframes`` modes): only every K-th frame counts as an HR keyframe,
    though the store knows the HR of others (evaluation: scores need every frame's HR). In ``keyframes`` mode the
    frames after the last keyframe take the one before alone, said once in a warning line."""
    tasks = []
    if store.kind != Kind.VIDEO and reference_mode == ReferenceMode.KEYFRAMES:
        raise InputError("--reference keyframes is for a video: a light field's views share its reference view",
                         store.path)
    if store.kind == Kind.VIDEO:
        def keyframe(s: int) -> bool:
            return bool(store.hr_known[s]) and (keyframe_every is None or s % keyframe_every == 0)

        frames = store.view_shape[0]
        keyframes = [s for s in range(frames) if keyframe(s)]
        one_sided = []
        for (t,) in store.views():
            if t == 0 or (reference_mode != ReferenceMode.PREVIOUS and keyframe(t)):
                continue  # frame 0 has no earlier frame; with keyframes, a keyframe is its own HR
            if reference_mode == ReferenceMode.PREVIOUS_SR:
                if not store.hr_known[0]:
                    raise InputError("frame 0 has no HR to start the propagation from", store.path)
                source = "hr" if store.hr_known[t - 1] else None  # None: filled with the method name at run time
                tasks.append(Task(store, (t,), (t - 1,), ViewHint(frame_offset=1), source or "sr"))
                continue
            if reference_mode == ReferenceMode.PREVIOUS:
                reference = t - 1
                if not store.hr_known[reference]:
                    raise InputError(
                        f"frame {reference} has no HR (keyframes only): use --reference keyframe", store.path
                    )
                tasks.append(Task(store, (t,), (reference,), ViewHint(frame_offset=1)))
                continue
            later = bisect.bisect_right(keyframes, t)  # keyframes[:later] are at or before t; t is not one
            if not later:
                raise InputError(f"no HR keyframe before frame {t}", store.path)
            before = keyframes[later - 1]
            task = Task(store, (t,), (before,), ViewHint(frame_offset=t - before))
            if reference_mode == ReferenceMode.KEYFRAMES:
                if later < len(keyframes):
                    after = keyframes[later]
                    task = replace(task, next_reference=(after,), next_hint=ViewHint(frame_offset=t - after))
                else:
                    one_sided.append(t)
            tasks.append(task)
        if one_sided:
            alone = (f"frame {one_sided[0]} uses" if len(one_sided) == 1
                     else f"frames {one_sided[0]}-{one_sided[-1]} use")
            log.warning("lfrefsr: warning: %s: no HR keyframe after keyframe %d: %s it alone", store.path.name,
                        keyframes[-1], alone)
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


# -- execution, shared by the in-process engine and dask workers ------------------------------------------------

_CACHE: dict = {"methods": {}, "references": OrderedDict()}
# a light field has one reference; videos move on frame by frame; in keyframes mode a frame needs two, and a dask
# worker may take the frames of neighbouring keyframe intervals in any order
_REFERENCES_KEPT = 3


def configure_threads(threads: int | None) -> None:
    """Same thread counts everywhere, so a worker's result equals the in-process one bit for bit."""
    if threads:
        import cv2

        torch.set_num_threads(int(threads))
        cv2.setNumThreads(int(threads))


def cached_method(name: str, scale: int, device: str, options: dict | None) -> Method:
    """Models load once per process (a dask worker keeps them for all its tasks)."""
    key = (name, scale, device, json.dumps(options or {}, sort_keys=True, default=str))
    if key not in _CACHE["methods"]:
        _CACHE["methods"][key] = get_method(name, scale=scale, device=device, **(options or {}))
    return _CACHE["methods"][key]


def _reference_context(method: Method, task: Task, method_name: str, method_key,
                       reference: tuple[int, ...] | None = None):
    """Per-reference work (CC-Net reference features, ...) once per reference image per process: the task's
    reference, or ``reference`` (its ``next_reference``), which is always HR."""
    array = f"sr/{method_name}" if task.reference_array == "sr" else task.reference_array
    if reference is None:
        reference = task.reference
    else:
        array = "hr"
    key = (method_key, str(task.store.path), array, reference)
    references = _CACHE["references"]
    if key in references:
        references.move_to_end(key)
        return references[key]
    if array == "hr":
        image = task.store.read("hr", reference)
    else:
        if not task.store.done(method_name)[reference]:
            raise LfrefsrError(f"reference frame {list(reference)} has no {method_name} result", task.store.path)
        image = task.store.read(array, reference)
    ref = protocol.to_float(image, task.store.dtype)
    if method.uses_views and task.hint.grid_offset is not None:  # a light field: all its LR views, read here
        context = method.prepare(ref, views=_light_field_views(task))
    else:
        context = method.prepare(ref)
    references[key] = context
    while len(references) > _REFERENCES_KEPT:
        references.popitem(last=False)
    return context


def _light_field_views(task: Task) -> list[tuple[ViewHint, torch.Tensor]]:
    """Every LR view of the target's light field (same leading indices, e.g. the time step) but the reference, each
    with its grid offset: the whole grid, whichever views this run writes, so the result never depends on them."""
    prefix, (u0, v0) = task.reference[:-2], task.reference[-2:]
    views = []
    for index in task.store.views():
        if tuple(index[:-2]) != tuple(prefix) or tuple(index[-2:]) == (u0, v0):
            continue
        lr = protocol.to_float(task.store.read("lr", index), task.store.dtype)
        views.append((ViewHint(grid_offset=(index[-2] - u0, index[-1] - v0)), lr))
    return views


def execute(task: Task, method_name: str, *, device: str = "cpu", options: dict | None = None,
            threads: int | None = None, after=None, confidence: bool = False) -> dict:
    """Super-resolve one view and write it (data, with ``confidence`` its confidences, then done-marker). Runs
    in-process or on a dask worker.

    ``after`` is only a dependency (the previous frame's task in previous-sr mode)."""
    configure_threads(threads)
    started = time.perf_counter()
    method = cached_method(method_name, task.store.scale, device, camera_options(method_name, task.store, options))
    sides = [(_reference_context(method, task, method_name, id(method)), task.hint)]
    if task.next_reference is not None:
        sides.append((_reference_context(method, task, method_name, id(method), task.next_reference), task.next_hint))
    lr = protocol.to_float(task.store.read("lr", task.target), task.store.dtype)
    with torch.inference_mode():
        if confidence:
            sr, found = method.super_resolve_sides_with_confidence(lr, sides)  # (3, H, W), (K, H, W)
            found = found.float().cpu().numpy()
        else:
            sr, found = method.super_resolve_sides(lr, sides), None
    task.store.write_result(method_name, task.target, protocol.quantize(sr, task.store.dtype), found)
    return {"view": task.label, "seconds": time.perf_counter() - started}


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
        text = (f"{self.done} views done, {self.skipped} already done, {self.seconds:.1f} s, "
                f"{self.views_per_second:.2f} views/s")
        if self.failed:
            text += f"; FAILED: {', '.join(label for label, _ in self.failed)}"
        return text


def failure(exc: BaseException) -> str:
    """A failed view's reason, the same in-process and on a cluster: lfrefsr's own errors are one clear line
    already; anything else is named by its type."""
    return str(exc) if isinstance(exc, LfrefsrError) else f"{type(exc).__name__}: {exc}"


def pending(tasks: list[Task], method_name: str) -> list[Task]:
    """The tasks whose view is not marked done, read without creating or changing anything."""
    stores = {task.store.path: task.store for task in tasks}
    done = {path: store.done(method_name) for path, store in stores.items()}
    return [task for task in tasks if not done[task.store.path][task.target]]


def camera_options(method_name: str, store: Store, options: dict | None) -> dict | None:
    """A method that models the LR camera gets the store's estimate of it (``capture`` attributes, recorded where the
    LR views come from a camera) unless ``options`` give ``psf`` or ``noise`` themselves."""
    found = store.attrs.get("capture")
    wanted = method_class(method_name, options).camera
    if not found or not wanted:
        return options
    return {**{key: found[key] for key in wanted if key in found}, **(options or {})}


def check_method(method_name: str, scale: int, options: dict | None) -> None:
    """Fail fast, in one line, on a method that cannot run with ``options`` (missing or foreign weights, a bad
    variant): built once on the CPU before any store changes. The precision is left to ``run_options``, which
    decides it for the run's device."""
    get_method(method_name, scale=scale, device="cpu",
               **{key: value for key, value in (options or {}).items() if key != "precision"})


def run_options(method_name: str, options: dict | None, device: str) -> tuple[dict | None, dict]:
    """(``options`` with the precision that runs on ``device``, the settings recorded with the result). A learned
    method asked for bfloat16 where it is not native runs float32 (one warning line, here, not on every worker)."""
    if not method_class(method_name, options).learned:
        return options, {}
    precision = effective_precision((options or {}).get("precision", Precision.FP32), device)
    if options and "precision" in options:
        options = {**options, "precision": precision}
    return options, {"precision": precision}


def camera_settings(method_name: str, store: Store, options: dict | None) -> dict:
    """The LR camera model a method runs with on ``store`` (``camera_options``), as recorded with its results."""
    chosen = camera_options(method_name, store, options) or {}
    return {key: chosen[key] for key in method_class(method_name, options).camera if key in chosen}


def confidence_channels(method_name: str, options: dict | None) -> tuple[str, ...]:
    """The confidences a method gives (``Method.confidence``); one line where it gives none."""
    channels = method_class(method_name, options).confidence
    if not channels:
        raise InputError(f"method {method_name!r} gives no confidence to save")
    return channels


def network_settings(method_name: str, options: dict | None) -> dict:
    """The trained networks a method loads, as recorded with its results: ``{"networks": "sisr+ssnet"}``, or {} for
    a classical method."""
    found = network_names(method_name, options)
    return {"networks": "+".join(found.values())} if found else {}


def start_run(tasks: list[Task], method_name: str, overwrite: bool, settings: dict | None = None,
              options: dict | None = None, confidence: bool = False) -> tuple[list[Task], int]:
    """Create (or with ``overwrite`` recreate) the result arrays, recording ``settings`` (``run_options``) and the
    camera model each store gives the method, and with ``confidence`` its confidence array; -> the tasks not done
    yet, and how many are. A result is all with confidences or all without: a resumed run that differs from the
    views already done is refused, before anything is written."""
    stores = {task.store.path: task.store for task in tasks}
    channels = confidence_channels(method_name, options) if confidence else ()
    for store in stores.values():
        if overwrite:
            continue
        had = bool(store.confidence_channels(method_name))
        if store.done(method_name).any() and had != confidence:
            raise InputError(f"sr/{method_name} has views done {'with' if had else 'without'} confidence: give "
                             f"--save-confidence {'again' if had else 'from the start'}, or --overwrite", store.path)
    for store in stores.values():
        if overwrite:
            store.clear_result(method_name)
        store.ensure_result(method_name, {**(settings or {}), **camera_settings(method_name, store, options),
                                          **network_settings(method_name, options)}, channels)
    todo = pending(tasks, method_name)
    return todo, len(tasks) - len(todo)


def run_serial(
    tasks: list[Task],
    method_name: str,
    *,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    method_options: dict | None = None,
    threads: int | None = None,
    confidence: bool = False,
) -> Summary:
    """Run ``tasks`` in this process; results (with ``confidence``, their confidences) and done-markers reach the
    store as each view finishes."""
    summary = Summary()
    start = time.perf_counter()
    method_options, settings = run_options(method_name, method_options, device)
    todo, summary.skipped = start_run(tasks, method_name, overwrite, settings, method_options, confidence)
    for task in tqdm(todo, desc=method_name, unit="view", disable=not progress):
        try:
            execute(task, method_name, device=device, options=method_options, threads=threads,
                    confidence=confidence)
            summary.done += 1
        except Exception as exc:  # noqa: BLE001 -- the view failed, whatever the error: name it, keep the others
            summary.failed.append((task.label, failure(exc)))
    summary.seconds = time.perf_counter() - start
    return summary
