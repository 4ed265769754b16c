"""Reconstruction on dask.distributed: one task per view or frame, on a LocalCluster or an existing cluster.

Each task carries only paths and indices (a ``Task``); the worker opens the store, reads its LR chunk and the
reference, runs the method, writes its chunk and its done-marker, and returns a few numbers -- the client never
gathers image data. Models load once per worker process and reference features are computed once per reference
per worker (``lfrefsr.pipeline`` caches). With ``device="cuda"`` every task asks for ``resources={"GPU": 1}``, so
a cluster of GPU workers (``dask worker ADDR --resources GPU=1``) runs one model per GPU. In previous-sr mode a
frame's task depends on the previous frame's task; no other dependencies exist.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext

from tqdm.auto import tqdm

from lfrefsr.errors import LfrefsrError
from lfrefsr.pipeline import Summary, Task, execute, failure, pending, run_options, start_run


def default_workers(threads_per_worker: int = 1) -> int:
    """Worker processes for a LocalCluster on this machine: one per ``threads_per_worker`` cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // threads_per_worker)


@contextmanager
def open_client(scheduler: str | None = None, *, workers: int | None = None, threads_per_worker: int = 1,
                gpu: bool = False, timeout: float = 10.0):
    """A client of an existing scheduler (``tcp://HOST:PORT``) or of a LocalCluster of worker processes."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise LfrefsrError(f"cannot reach the dask scheduler {scheduler} ({type(exc).__name__})") from None
        except ValueError as exc:
            raise LfrefsrError(f"bad scheduler address {scheduler!r} ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    import logging

    # Both put back when the cluster is gone. The nannies write their workers' settings into this process's
    # environment before each spawn (``distributed.nanny.pre-spawn-environ``: OMP_NUM_THREADS=1, MKL_NUM_THREADS=1,
    # ...); left there, every process the caller starts afterwards (a notebook kernel, a test's subprocess) ran on
    # one thread.
    environ = dict(os.environ)
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # worker/scheduler chatter is not the user's
    try:
        with dask.config.set({"distributed.worker.daemon": False, "logging.distributed": "critical"}):
            cluster = LocalCluster(n_workers=workers or default_workers(threads_per_worker),
                                   threads_per_worker=threads_per_worker, processes=True, dashboard_address=":0",
                                   resources={"GPU": 1} if gpu else None, silence_logs=logging.CRITICAL)
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
                cluster.close()
    finally:
        for key in set(os.environ) - set(environ):
            del os.environ[key]
        os.environ.update(environ)
        logger.setLevel(level)


def run_distributed(
    tasks: list[Task],
    method_name: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    device: str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    method_options: dict | None = None,
    retries: int = 1,
    client=None,
    confidence: bool = False,
) -> Summary:
    """Run ``tasks`` as dask tasks; each writes its own chunk as it finishes. Failed views are named, not fatal."""
    from distributed import as_completed

    summary = Summary()
    started = time.perf_counter()
    if not overwrite and not pending(tasks, method_name):  # all done: no cluster needed
        summary.skipped = len(tasks)
        summary.seconds = time.perf_counter() - started
        return summary
    opened = nullcontext(client) if client is not None else open_client(
        scheduler, workers=workers, threads_per_worker=threads_per_worker, gpu=device == "cuda")
    with opened as client:
        from lfrefsr.worker_plugin import ProcessSettings

        client.register_plugin(ProcessSettings())  # the workers' process-wide settings, as the CLI's
        method_options, settings = run_options(method_name, method_options, device)
        # stores change only once connected
        todo, summary.skipped = start_run(tasks, method_name, overwrite, settings, method_options, confidence)
        futures, previous = {}, {}
        for task in todo:
            after = previous.get((task.store.path, task.reference)) if task.reference_array != "hr" else None
            future = client.submit(
                execute, task, method_name, device=device, options=method_options, threads=threads_per_worker,
                after=after, confidence=confidence, key=f"lfrefsr-{method_name}-{task.label}-{time.time_ns()}",
                pure=False,
                resources={"GPU": 1} if device == "cuda" else None, retries=retries,
            )
            futures[future] = task
            previous[(task.store.path, task.target)] = future
        with tqdm(total=len(futures), desc=method_name, unit="view", disable=not progress) as bar:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    future.result()
                    summary.done += 1
                except Exception as exc:  # the view failed on every try: name it, keep the others
                    summary.failed.append((task.label, failure(exc)))
                bar.update(1)
    summary.seconds = time.perf_counter() - started
    return summary
