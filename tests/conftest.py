"""Shared fixtures: tiny seeded light-field and frame folders, and a CliRunner helper.

The synthetic data is rendered once per session into template folders; each test gets its own copy, so a test may
damage its input freely.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from lfrefsr.cli import cli
from lfrefsr.io.images import write_image

LF_GRID = 3  # views per side
LF_SIZE = (32, 32)  # (H, W): at x8 the LR views are 4x4
VIDEO_FRAMES = 4
VIDEO_SIZE = (32, 48)
SEED = 3


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def run_cli(args) -> click.testing.Result:
    """Invoke ``lfrefsr ARGS`` in-process; stdout and stderr are kept apart (``result.stderr``)."""
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()  # click >= 8.2: stderr is always separate
    return runner.invoke(cli, [str(a) for a in args], prog_name="lfrefsr")


def snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` -> (size, mtime_ns) (None for folders): detects any change to an input."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            stat = path.stat()
            entries[str(path.relative_to(folder))] = (None if path.is_dir() else stat.st_size, stat.st_mtime_ns)
    return entries


def write_views(folder: Path, hr: np.ndarray, name) -> Path:
    """Write views ``hr`` (U, V, 3, H, W) as ``name(u, v)`` PNG files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for u in range(hr.shape[0]):
        for v in range(hr.shape[1]):
            write_image(folder / name(u, v), hr[u, v])
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Session templates (rendered once) and per-test copies
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lf_hr() -> np.ndarray:
    from lfrefsr.data.synthetic import make_lightfield

    return make_lightfield(LF_GRID, LF_SIZE, seed=SEED)["hr"]  # (U, V, 3, H, W) uint8


@pytest.fixture(scope="session")
def video_hr() -> np.ndarray:
    from lfrefsr.data.synthetic import make_video

    return make_video(VIDEO_FRAMES, VIDEO_SIZE, seed=SEED)["hr"]  # (T, 3, H, W) uint8


@pytest.fixture(scope="session")
def _templates(tmp_path_factory, lf_hr, video_hr) -> dict:
    root = tmp_path_factory.mktemp("templates")
    lf = write_views(root / "lf", lf_hr, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    hci = write_views(root / "hci", lf_hr, lambda u, v: f"input_Cam{u * LF_GRID + v:03d}.png")
    frames = root / "frames"
    frames.mkdir()
    for t, frame in enumerate(video_hr):
        write_image(frames / f"frame_{t:04d}.png", frame)
    (frames / "notes.txt").write_text("not a frame\n")
    (frames / "extra").mkdir()  # a subfolder with an image: must be ignored
    write_image(frames / "extra" / "frame_0000.png", video_hr[0])
    return {"lf": lf, "hci": hci, "frames": frames}


def _copy(template: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / "in" / name
    shutil.copytree(template, target)
    return target


@pytest.fixture
def lf_dir(_templates, tmp_path) -> Path:
    """A 3x3 light field of 32x32 views named ``view_UU_VV.png``."""
    return _copy(_templates["lf"], tmp_path, "lf")


@pytest.fixture
def hci_dir(_templates, tmp_path) -> Path:
    """The same light field named ``input_CamNNN.png`` (HCI, row-major)."""
    return _copy(_templates["hci"], tmp_path, "hci")


@pytest.fixture
def frames_dir(_templates, tmp_path) -> Path:
    """4 frames of 32x48 (``frame_NNNN.png``), plus ``notes.txt`` and a subfolder ``extra/`` to be ignored."""
    return _copy(_templates["frames"], tmp_path, "frames")


@pytest.fixture
def out_dir(tmp_path) -> Path:
    """An empty folder for outputs."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _restore_log_level():
    """``-v``/``-q`` set the level of the ``lfrefsr`` logger; keep that from leaking into the next test."""
    logger = logging.getLogger("lfrefsr")
    level = logger.level
    yield
    logger.setLevel(level)


# ---------------------------------------------------------------------------------------------------------------
# CPU capability: both branches on any machine
# ---------------------------------------------------------------------------------------------------------------

AVX2_ONLY_MISSING = "this CPU has no avx512_bf16, amx_bf16 or avx_ne_convert"


@pytest.fixture
def no_native_bf16(monkeypatch):
    """This process sees a CPU like an AVX2-only one (AMD Zen 3): no native bfloat16, the fused convolution in
    float32 only. Warnings start afresh."""
    import torch

    from lfrefsr import capability

    fake = capability.CpuCapability(isa="AVX2", bf16=False, bf16_missing=AVX2_ONLY_MISSING,
                                    fused=capability.cpu().fused & {torch.float32})
    monkeypatch.setattr(capability, "cpu", lambda: fake)
    monkeypatch.setattr(capability, "_WARNED", set())
    return fake


@pytest.fixture
def native_bf16(monkeypatch):
    """Skips where this CPU has no native bfloat16 (the fallback is tested with ``no_native_bf16``)."""
    from lfrefsr import capability

    if not capability.cpu().bf16:
        pytest.skip(f"no native bfloat16 here: {capability.cpu().bf16_missing}")
    monkeypatch.setattr(capability, "_WARNED", set())
    return capability.cpu()
