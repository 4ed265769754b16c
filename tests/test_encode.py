"""Re-encoding with PyAV: FFV1 decodes back bit-exactly, H.264 keeps frame count and size, PNGs and mosaics."""

import numpy as np
import pytest
from conftest import run_cli

from lfrefsr.io.images import read_image
from lfrefsr.io.ingest import ingest_lf, ingest_video
from lfrefsr.pipeline import plan, run_serial


def _decode(path):
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").transpose(2, 0, 1) for f in container.decode(video=0)]


@pytest.fixture
def lf_store(lf_dir, tmp_path):
    store = ingest_lf(lf_dir, tmp_path / "lf.zarr", scale=4, progress=False)
    run_serial(plan(store), "bicubic", progress=False)
    return store


@pytest.fixture
def video_store(frames_dir, tmp_path):
    store = ingest_video(frames_dir, tmp_path / "v.zarr", scale=4, progress=False)
    run_serial(plan(store), "bicubic", progress=False)
    return store


def test_ffv1_sweep_is_lossless_and_serpentine(lf_store, tmp_path):
    result = run_cli(["encode", str(lf_store.path), str(tmp_path / "sweep"), "--what", "sweep", "--codec", "ffv1"])
    assert result.exit_code == 0, result.output
    frames = _decode(tmp_path / "sweep.mkv")
    rows, cols = lf_store.view_shape
    assert len(frames) == rows * cols
    np.testing.assert_array_equal(frames[0], lf_store.read("hr", (0, 0)))  # the reference view shows its HR
    np.testing.assert_array_equal(frames[cols], lf_store.read_result("bicubic", (1, cols - 1)))  # row 1 reversed


def test_h264_clip_keeps_frame_count_and_size(video_store, tmp_path):
    out = tmp_path / "clip.mp4"
    result = run_cli(["encode", str(video_store.path), str(out), "--what", "clip", "--crf", "23"])
    assert result.exit_code == 0, result.output
    frames = _decode(out)
    assert len(frames) == video_store.view_shape[0]
    assert frames[0].shape == (3, *video_store.shape_hr)


def test_views_and_grid_pngs(lf_store, tmp_path):
    assert run_cli(["encode", str(lf_store.path), str(tmp_path / "views")]).exit_code == 0
    files = sorted(p.name for p in (tmp_path / "views").iterdir())
    assert len(files) == lf_store.hr_known.size and files[0] == "view_00_00.png"
    np.testing.assert_array_equal(read_image(tmp_path / "views" / "view_01_02.png"),
                                  lf_store.read_result("bicubic", (1, 2)))
    assert run_cli(["encode", str(lf_store.path), str(tmp_path / "grid"), "--what", "grid"]).exit_code == 0
    mosaic = read_image(tmp_path / "grid" / "grid.png")
    rows, cols = lf_store.view_shape
    height, width = lf_store.shape_hr
    assert mosaic.shape == (3, rows * height, cols * width)
    np.testing.assert_array_equal(mosaic[:, height : 2 * height, 2 * width : 3 * width],
                                  lf_store.read_result("bicubic", (1, 2)))


def test_encode_refuses_missing_results_and_existing_output(lf_dir, tmp_path):
    store = ingest_lf(lf_dir, tmp_path / "empty.zarr", scale=4, progress=False)
    result = run_cli(["encode", str(store.path), str(tmp_path / "x")])
    assert result.exit_code != 0 and "reconstruct" in result.stderr and not (tmp_path / "x").exists()
    (tmp_path / "exists.mp4").write_bytes(b"keep")
    run_serial(plan(store), "bicubic", progress=False)
    result = run_cli(["encode", str(store.path), str(tmp_path / "exists.mp4"), "--what", "sweep"])
    assert result.exit_code != 0 and (tmp_path / "exists.mp4").read_bytes() == b"keep"
