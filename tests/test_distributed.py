"""The pipeline on a real dask.distributed cluster: a scheduler and two GPU-resourced workers on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli

from lfrefsr.data.synthetic import make_lfvideo, make_lightfield, make_video
from lfrefsr.io.images import write_image
from lfrefsr.io.ingest import ingest_lf, ingest_video
from lfrefsr.io.store import Store
from lfrefsr.modes import ReferenceMode
from lfrefsr.pipeline import plan, run_serial

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """`dask scheduler` and `dask worker --resources GPU=1` processes, stopped by their process ids."""

    def __init__(self, workers: int = 2):
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env, "start_new_session": True}
        self.scheduler = subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                                           "--port", str(self.port), "--no-dashboard"], **quiet)
        self.workers = [
            subprocess.Popen([sys.executable, "-m", "dask", "worker", self.address, "--nthreads", "1",
                              "--nworkers", "1", "--resources", "GPU=1", "--no-dashboard", "--memory-limit", "0",
                              "--no-nanny", "--death-timeout", "60"], **quiet)
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)

    def kill_worker(self, k: int) -> None:
        os.killpg(self.workers[k].pid, signal.SIGKILL)

    def stop(self) -> None:
        for process in [*self.workers, self.scheduler]:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster():
    started = Cluster()
    yield started
    started.stop()


def _lightfield(folder, grid=3, size=(64, 64), seed=4):
    data = make_lightfield(grid=grid, size=size, seed=seed, max_disparity=1.0)
    folder.mkdir(parents=True)
    for u in range(grid):
        for v in range(grid):
            write_image(folder / f"view_{u:02d}_{v:02d}.png", data["hr"][u, v])
    return folder


def _results(store: Store, method: str) -> np.ndarray:
    return np.stack([store.read_result(method, t.target) for t in plan(store)])


@pytest.mark.parametrize("method", ["flowwarp", "refsr"])  # refsr: every worker estimates the shared disparity
def test_cluster_result_equals_in_process_result(cluster, tmp_path, method):
    src = _lightfield(tmp_path / "src")
    local = ingest_lf(src, tmp_path / "local.zarr", progress=False)
    remote = ingest_lf(src, tmp_path / "remote.zarr", progress=False)
    run_serial(plan(local), method, progress=False, threads=1, confidence=True)
    result = run_cli(["reconstruct", str(remote.path), "--method", method, "--scheduler", cluster.address,
                      "--save-confidence", "-q"])
    assert result.exit_code == 0, result.output
    assert "8 views done" in result.output
    np.testing.assert_array_equal(_results(remote, method), _results(local, method))
    for task in plan(local):
        np.testing.assert_array_equal(remote.read_confidence(method, task.target),
                                      local.read_confidence(method, task.target))


def test_gpu_tasks_ask_for_gpu_resources(cluster, tmp_path):
    """--device cuda on a CPU-only client is allowed with --scheduler: the tasks go to GPU-resourced workers.
    Here the workers have no CUDA either, so every view fails cleanly and is named, with a non-zero exit."""
    store = ingest_lf(_lightfield(tmp_path / "src", grid=2), tmp_path / "s.zarr", progress=False)
    result = run_cli(["reconstruct", str(store.path), "--method", "bicubic", "--device", "cuda",
                      "--scheduler", cluster.address, "-q"])
    import torch

    if torch.cuda.is_available():
        assert result.exit_code == 0
    else:
        assert result.exit_code != 0 and "FAILED" in result.output and "[0, 1]" in result.output


def test_light_field_video_and_two_stores_in_one_call(cluster, tmp_path):
    data = make_lfvideo(frames=3, grid=4, size=(32, 32), seed=2)
    for t in range(3):
        folder = tmp_path / "lfv" / f"capture_{t}"
        folder.mkdir(parents=True)
        for u in range(4):
            for v in range(4):
                write_image(folder / f"view_{u:02d}_{v:02d}.png", data["hr"][t, u, v])
    lfv = ingest_lf(tmp_path / "lfv", tmp_path / "lfv.zarr", progress=False)
    other = ingest_lf(_lightfield(tmp_path / "src", grid=2), tmp_path / "other.h5", progress=False)
    result = run_cli(["reconstruct", str(lfv.path), str(other.path), "--method", "bicubic", "--scheduler",
                      cluster.address, "-q"])
    assert result.exit_code == 0, result.output
    assert "48 views done" in result.output  # 3 x 15 + 3
    assert lfv.done("bicubic").sum() == 45 and not lfv.done("bicubic")[:, 0, 0].any()
    assert other.done("bicubic").sum() == 3


def test_a_killed_worker_does_not_stop_the_run(tmp_path):
    own = Cluster()
    try:
        store = ingest_lf(_lightfield(tmp_path / "src", grid=6, size=(192, 192)), tmp_path / "s.zarr",
                          progress=False)
        cli = subprocess.Popen([sys.executable, "-m", "lfrefsr.cli", "reconstruct", str(store.path), "--method",
                                "flowwarp", "--scheduler", own.address, "-q"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while store.done("flowwarp").sum() < 2 and time.time() < deadline and cli.poll() is None:
            time.sleep(0.05)
        own.kill_worker(0)
        out, err = cli.communicate(timeout=240)
        assert cli.returncode == 0, out + err
        assert store.done("flowwarp").sum() == 35
    finally:
        own.stop()


def test_a_failing_view_is_named_and_the_others_complete(cluster, tmp_path):
    store = ingest_lf(_lightfield(tmp_path / "src"), tmp_path / "s.zarr", progress=False)
    chunk = tmp_path / "s.zarr" / "lr" / "c" / "1" / "2" / "0" / "0" / "0"
    chunk.write_bytes(b"garbage")
    result = run_cli(["reconstruct", str(store.path), "--method", "bicubic", "--scheduler", cluster.address, "-q"])
    assert result.exit_code != 0
    assert "s.zarr[1, 2]" in result.output + result.stderr
    done = store.done("bicubic")
    assert done.sum() == 7 and not done[1, 2]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_sigkill_then_rerun_resumes_to_the_same_store(tmp_path, workers):
    src = _lightfield(tmp_path / "src", grid=6, size=(192, 192))
    reference = ingest_lf(src, tmp_path / "ref.zarr", progress=False)
    run_serial(plan(reference), "flowwarp", progress=False, threads=1)
    store = ingest_lf(src, tmp_path / "s.zarr", progress=False)
    command = [sys.executable, "-m", "lfrefsr.cli", "reconstruct", str(store.path), "--method", "flowwarp",
               "--workers", workers, "-q"]
    cli = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while store.done("flowwarp").sum() < 3 and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(cli.pid, signal.SIGKILL)  # the CLI and any worker processes it started
    cli.wait()
    finished = int(store.done("flowwarp").sum())
    assert 0 < finished < 35, "the kill must land mid-run"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    done_now = int(rerun.stdout.split(" views done")[0].split()[-1])
    assert done_now <= 35 - finished + 1  # only the missing views (one may have been mid-write)
    assert store.done("flowwarp").all() == False and store.done("flowwarp").sum() == 35  # noqa: E712 (ref view)
    np.testing.assert_array_equal(_results(store, "flowwarp"), _results(reference, "flowwarp"))


def test_keyframes_mode_on_dask_workers_resumes_after_sigkill_to_the_in_process_result(tmp_path):
    """--reference keyframes: every in-between frame depends only on the HR keyframes around it, so the frames run
    in parallel on two workers; killed mid-run and rerun, the store equals an uninterrupted in-process run."""
    frames = 17  # keyframes 0, 4, 8, 12, 16: 12 frames between them
    data = make_video(frames=frames, size=(256, 256), seed=3)
    src = tmp_path / "clip"
    src.mkdir()
    for t in range(frames):
        write_image(src / f"frame_{t:04d}.png", data["hr"][t])
    reference = ingest_video(src, tmp_path / "ref.zarr", keyframe_every=4, progress=False)
    tasks = plan(reference, reference_mode=ReferenceMode.KEYFRAMES)
    assert all(task.next_reference is not None for task in tasks)
    run_serial(tasks, "flowwarp", progress=False, threads=1)
    store = ingest_video(src, tmp_path / "s.zarr", keyframe_every=4, progress=False)
    command = [sys.executable, "-m", "lfrefsr.cli", "reconstruct", str(store.path), "--method", "flowwarp",
               "--reference", "keyframes", "--workers", "2", "-q"]
    cli = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while store.done("flowwarp").sum() < 2 and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(cli.pid, signal.SIGKILL)  # the CLI and its worker processes
    cli.wait()
    finished = int(store.done("flowwarp").sum())
    assert 0 < finished < len(tasks), "the kill must land mid-run"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert int(store.done("flowwarp").sum()) == len(tasks)
    expected = np.stack([reference.read_result("flowwarp", task.target) for task in tasks])
    found = np.stack([store.read_result("flowwarp", task.target) for task in tasks])
    np.testing.assert_array_equal(found, expected)


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Three seeded random kill moments, each on a fresh store: after the kill every view marked done already
    holds its final data; after the resume the whole store equals the uninterrupted run bit for bit."""
    import shutil

    src = _lightfield(tmp_path / "src", grid=5, size=(192, 192))
    reference = ingest_lf(src, tmp_path / "ref.zarr", progress=False)
    run_serial(plan(reference), "flowwarp", progress=False, threads=1)
    expected = _results(reference, "flowwarp")
    pristine = ingest_lf(src, tmp_path / "pristine.zarr", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = np.random.default_rng(2026)
    finished = []
    total = len(expected)
    # random moments, drawn as "after k views, plus a random part of the next view", so that they land mid-run
    # however fast the machine is
    moments = zip(rng.integers(1, total - 4, size=3), rng.uniform(0, 0.05, size=3), strict=True)
    for attempt, (after, extra) in enumerate(moments):
        path = tmp_path / f"kill{attempt}.zarr"
        shutil.copytree(pristine.path, path)
        store = Store.open(path)
        command = [sys.executable, "-m", "lfrefsr.cli", "reconstruct", str(path), "--method", "flowwarp",
                   "--workers", "0", "-q"]
        cli = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                               start_new_session=True)
        deadline = time.time() + 120
        while store.done("flowwarp").sum() < after and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(float(extra))
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait()
        done = store.done("flowwarp")
        finished.append(int(done.sum()))
        for k, task in enumerate(plan(store)):
            if done[task.target]:
                np.testing.assert_array_equal(store.read_result("flowwarp", task.target), expected[k])
        rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
        assert rerun.returncode == 0, rerun.stderr
        np.testing.assert_array_equal(_results(store, "flowwarp"), expected)
    assert any(0 < count < len(expected) for count in finished), f"no kill landed mid-run: {finished}"


def test_workers_take_the_process_wide_settings_and_methods_do_not_set_them(cluster, tmp_path):
    """keep_freed_memory is an entry point's choice: every worker run_distributed uses applies it (the plugin), and
    building a method in a fresh process does not."""
    import ctypes.util

    if not sys.platform.startswith("linux") or "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("glibc's mallopt")
    from distributed import Client

    from lfrefsr.distributed import run_distributed

    store = ingest_lf(_lightfield(tmp_path / "src", grid=2), tmp_path / "s.zarr", progress=False)
    with Client(cluster.address, timeout=60) as client:
        summary = run_distributed(plan(store), "bicubic", client=client, progress=False)
        assert summary.done == 3
        applied = client.run(lambda: __import__("lfrefsr.runtime").runtime._state["applied"])
    assert set(applied.values()) == {True}
    code = ("from lfrefsr.methods import get_method; from lfrefsr import runtime; get_method('flowwarp'); "
            "print(runtime._state['applied'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_a_local_cluster_leaves_the_callers_environment_as_it_was():
    """The nannies write their workers' settings (OMP_NUM_THREADS=1, ...) into this process's environment before
    spawning them: the workers keep them, and once the cluster is gone this process has its own back, with the
    distributed logger's level, so processes it starts later (a notebook kernel) keep their threads."""
    import logging

    import distributed  # noqa: F401  (its import sets the logger's level, as the user's own import would)

    from lfrefsr.distributed import open_client

    before, level = dict(os.environ), logging.getLogger("distributed").level
    with open_client(workers=1) as client:
        assert set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values()) == {"1"}
    assert dict(os.environ) == before
    assert logging.getLogger("distributed").level == level
