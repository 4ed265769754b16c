"""The command line (SPEC "Command line", "Eval JSON", "Stores") through click's CliRunner on tiny seeded data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from conftest import AVX2_ONLY_MISSING, LF_GRID, LF_SIZE, VIDEO_FRAMES, VIDEO_SIZE, run_cli, snapshot

from lfrefsr import protocol
from lfrefsr.cli import cli
from lfrefsr.errors import StoreError
from lfrefsr.io.store import Store
from lfrefsr.methods import available


def _commands(group: click.Group, prefix=()):
    """Every command path of the CLI, groups included: ("",), ("ingest",), ("ingest", "lf"), ..."""
    yield prefix, group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


COMMANDS = list(_commands(cli))


def _ok(result) -> None:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}\n" \
                                  f"exception: {result.exception!r}"


def _no_temporaries(folder) -> None:
    leftovers = [p.name for p in folder.iterdir() if ".tmp-" in p.name]
    assert not leftovers, f"temporary siblings left in {folder}: {leftovers}"


def _ingest_lf(src, store, *extra):
    result = run_cli(["ingest", "lf", src, store, "-q", *extra])
    _ok(result)
    return Store.open(store)


def _bicubic(store: Store, index) -> np.ndarray:
    lr = protocol.to_float(store.read("lr", index), store.dtype)
    return protocol.quantize(protocol.upsample(lr, store.scale), store.dtype)


# ---------------------------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "lfrefsr" for p, _ in COMMANDS])
def test_help(path, command):
    result = run_cli([*path, "--help"])
    _ok(result)
    assert "Usage:" in result.stdout
    assert result.stderr == ""
    if not isinstance(command, click.Group):  # SPEC: every command has -v/-q
        assert "--verbose" in result.stdout and "--quiet" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# ingest + info
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_ingest_lf_then_info(lf_dir, out_dir, lf_hr, suffix):
    store_path = out_dir / f"scene{suffix}"
    result = run_cli(["ingest", "lf", lf_dir, store_path])
    _ok(result)
    assert f"{LF_GRID}x{LF_GRID} views of {LF_SIZE[0]}x{LF_SIZE[1]}, x8" in result.stdout
    assert store_path.exists()
    _no_temporaries(out_dir)

    store = Store.open(store_path)
    assert store.kind.value == "lf" and store.view_shape == (LF_GRID, LF_GRID) and store.scale == 8
    assert store.shape_hr == LF_SIZE and store.shape_lr == (LF_SIZE[0] // 8, LF_SIZE[1] // 8)
    assert store.ref == (0, 0) and store.dtype == np.uint8 and store.hr_known.all()
    np.testing.assert_array_equal(store.read("hr", (1, 2)), lf_hr[1, 2])
    np.testing.assert_array_equal(store.read("lr", (2, 1)), protocol.make_lr(lf_hr[2, 1], 8))

    info = run_cli(["info", store_path])
    _ok(info)
    assert "(lf, layout 1)" in info.stdout
    assert f"views ({LF_GRID}, {LF_GRID})" in info.stdout
    assert f"HR {LF_SIZE}" in info.stdout and "LR (4, 4)" in info.stdout and "x8" in info.stdout
    assert f"HR known for {LF_GRID * LF_GRID} of {LF_GRID * LF_GRID}" in info.stdout
    assert "sr/" not in info.stdout  # nothing reconstructed yet


def test_ingest_lf_hci_layout_matches_view_layout(hci_dir, lf_dir, out_dir):
    hci = _ingest_lf(hci_dir, out_dir / "hci.zarr", "--scale", "4")
    view = _ingest_lf(lf_dir, out_dir / "view.zarr", "--scale", "4")
    assert hci.attrs["layout"] == "hci" and view.attrs["layout"] == "view"
    assert hci.view_shape == view.view_shape == (LF_GRID, LF_GRID)
    for index in hci.views():
        np.testing.assert_array_equal(hci.read("hr", index), view.read("hr", index))


def test_ingest_lf_grid_origin_ref(lf_dir, out_dir, lf_hr):
    store = _ingest_lf(lf_dir, out_dir / "cut.zarr", "--grid", "2x2", "--origin", "1,1", "--ref", "1,0")
    assert store.view_shape == (2, 2) and store.ref == (1, 0)
    np.testing.assert_array_equal(store.read("hr", (0, 0)), lf_hr[1, 1])
    np.testing.assert_array_equal(store.read("hr", (1, 1)), lf_hr[2, 2])


def test_ingest_video_frame_folder(frames_dir, out_dir, video_hr):
    before = snapshot(frames_dir)
    store_path = out_dir / "clip.zarr"
    result = run_cli(["ingest", "video", frames_dir, store_path])
    _ok(result)
    assert f"video of {VIDEO_FRAMES} frames of {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, x8" in result.stdout
    store = Store.open(store_path)
    assert store.kind.value == "video" and store.view_shape == (VIDEO_FRAMES,)  # notes.txt and extra/ ignored
    assert store.shape_hr == VIDEO_SIZE and store.hr_known.all() and store.ref is None
    for t in range(VIDEO_FRAMES):
        np.testing.assert_array_equal(store.read("hr", (t,)), video_hr[t])
    assert snapshot(frames_dir) == before
    _no_temporaries(out_dir)

    info = run_cli(["info", store_path])
    _ok(info)
    assert "(video, layout 1)" in info.stdout and f"views ({VIDEO_FRAMES},)" in info.stdout


def test_ingest_video_keyframe_every(frames_dir, out_dir):
    store_path = out_dir / "clip.h5"
    _ok(run_cli(["ingest", "video", frames_dir, store_path, "--keyframe-every", "2", "-q"]))
    store = Store.open(store_path)
    assert store.view_shape == (VIDEO_FRAMES,)
    assert store.hr_known.tolist() == [True, False, True, False]
    assert store.read("lr", (1,)).any()  # LR exists for every frame, HR only on keyframes
    with pytest.raises(StoreError):
        store.read("hr", (1,))
    info = run_cli(["info", store_path])
    _ok(info)
    assert f"HR known for 2 of {VIDEO_FRAMES}" in info.stdout


def _lr_stream(frames_dir: Path, folder: Path, *, frames=None, scale=8, noise=0) -> Path:
    """The frames of ``frames_dir`` at 1/scale as another camera's frame folder (seeded noise on top)."""
    from lfrefsr.io.images import read_image, write_image
    from lfrefsr.io.video import frame_files

    folder.mkdir()
    rng = np.random.default_rng(0)
    for path in frame_files(frames_dir)[:frames]:
        lr = protocol.make_lr(read_image(path), scale).astype(np.int16)
        noisy = np.clip(lr + rng.integers(-noise, noise + 1, lr.shape), 0, 255)
        write_image(folder / path.name, noisy.astype(np.uint8))
    return folder


def test_ingest_video_from_two_streams(frames_dir, out_dir, video_hr):
    lr_dir = _lr_stream(frames_dir, out_dir.parent / "lr", noise=20)
    result = run_cli(["ingest", "video", frames_dir, out_dir / "hybrid.zarr", "--lr", lr_dir, "--keyframe-every", "2",
                      "-q"])
    _ok(result)
    store = Store.open(out_dir / "hybrid.zarr")
    assert store.view_shape == (VIDEO_FRAMES,) and list(store.hr_known) == [True, False, True, False]
    from lfrefsr.io.images import read_image
    from lfrefsr.io.video import frame_files

    for t, path in enumerate(frame_files(lr_dir)):
        np.testing.assert_array_equal(store.read("lr", (t,)), read_image(path))  # the camera's, not the protocol's
    np.testing.assert_array_equal(store.read("hr", (2,)), video_hr[2])


@pytest.mark.parametrize("what", ["count", "size"])
def test_ingest_video_refuses_an_lr_stream_that_does_not_match(what, frames_dir, out_dir):
    lr_dir = _lr_stream(frames_dir, out_dir.parent / "lr", **({"frames": 3} if what == "count" else {"scale": 4}))
    result = run_cli(["ingest", "video", frames_dir, out_dir / "hybrid.zarr", "--lr", lr_dir])
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert str(lr_dir) in line and str(frames_dir) in line and ("frames" in line)
    assert list(out_dir.iterdir()) == []


def test_ingest_video_max_frames(frames_dir, out_dir, video_hr):
    store_path = out_dir / "clip.zarr"
    result = run_cli(["ingest", "video", frames_dir, store_path, "--max-frames", "3", "-q"])
    _ok(result)
    assert "video of 3 frames" in result.stdout
    store = Store.open(store_path)
    assert store.view_shape == (3,) and store.hr_known.tolist() == [True] * 3
    np.testing.assert_array_equal(store.read("hr", (2,)), video_hr[2])


# ---------------------------------------------------------------------------------------------------------------
# reconstruct
# ---------------------------------------------------------------------------------------------------------------


def test_reconstruct_resume_and_overwrite(lf_dir, out_dir):
    store_path = out_dir / "scene.zarr"
    store = _ingest_lf(lf_dir, store_path)
    others = [index for index in store.views() if index != (0, 0)]

    first = run_cli(["reconstruct", store_path, "--method", "bicubic"])
    _ok(first)
    assert f"{len(others)} views done, 0 already done" in first.stdout
    assert store.methods() == ["bicubic"]
    done = store.done("bicubic")
    assert not done[0, 0] and all(done[index] for index in others)
    for index in others:
        np.testing.assert_array_equal(store.read_result("bicubic", index), _bicubic(store, index))
    info = run_cli(["info", store_path])
    _ok(info)
    assert f"sr/bicubic: {len(others)} views done" in info.stdout

    # A view whose result is (wrongly) zero but marked done: a rerun skips it and touches nothing ...
    store.write_result("bicubic", (1, 1), np.zeros_like(_bicubic(store, (1, 1))))
    before = snapshot(store_path)
    rerun = run_cli(["reconstruct", store_path, "--method", "bicubic"])
    _ok(rerun)
    assert f"0 views done, {len(others)} already done" in rerun.stdout
    assert snapshot(store_path) == before
    assert not store.read_result("bicubic", (1, 1)).any()

    # ... and --overwrite recomputes every view.
    again = run_cli(["reconstruct", store_path, "--method", "bicubic", "--overwrite"])
    _ok(again)
    assert f"{len(others)} views done, 0 already done" in again.stdout
    np.testing.assert_array_equal(store.read_result("bicubic", (1, 1)), _bicubic(store, (1, 1)))
    assert store.done("bicubic").sum() == len(others)
    _no_temporaries(out_dir)


@pytest.mark.parametrize("method,channels", [("flowwarp", ["trust"]), ("refsr", ["trust", "reference"])])
def test_reconstruct_saves_confidence_beside_an_unchanged_result(method, channels, lf_dir, out_dir):
    stores = {name: _ingest_lf(lf_dir, out_dir / f"{name}.zarr") for name in ("plain", "confident")}
    _ok(run_cli(["reconstruct", stores["plain"].path, "--method", method, "--workers", "0", "-q"]))
    _ok(run_cli(["reconstruct", stores["confident"].path, "--method", method, "--workers", "0", "--save-confidence",
                 "-q"]))
    confident = stores["confident"]
    assert confident.confidence_channels(method) == channels and stores["plain"].confidence_channels(method) == []
    for index in confident.views():
        if index == (0, 0):
            continue
        np.testing.assert_array_equal(confident.read_result(method, index), stores["plain"].read_result(method, index))
        found = confident.read_confidence(method, index)
        assert found.shape == (len(channels), *confident.shape_hr) and 0 <= found.min() and found.max() <= 1
        assert found.std() > 0  # a map, not a constant
    assert f"confidence/{method}: {', '.join(channels)}" in run_cli(["info", confident.path]).stdout


def test_save_confidence_refuses_a_method_without_one_and_a_mixed_resume(lf_dir, out_dir):
    store = _ingest_lf(lf_dir, out_dir / "s.zarr")
    refused = run_cli(["reconstruct", store.path, "--method", "bicubic", "--save-confidence"])
    assert refused.exit_code == 2 and "bicubic" in refused.stderr and "--save-confidence" in refused.stderr
    _ok(run_cli(["reconstruct", store.path, "--method", "flowwarp", "--views", "1,1", "--workers", "0", "-q"]))
    before = snapshot(store.path)
    mixed = run_cli(["reconstruct", store.path, "--method", "flowwarp", "--workers", "0", "--save-confidence"])
    assert mixed.exit_code == 1
    (line,) = [line for line in mixed.stderr.splitlines() if line.strip()]
    assert "without confidence" in line and "--overwrite" in line
    assert snapshot(store.path) == before
    _ok(run_cli(["reconstruct", store.path, "--method", "flowwarp", "--workers", "0", "--save-confidence",
                 "--overwrite", "-q"]))
    assert store.done("flowwarp").sum() == len(store.views()) - 1 and store.confidence_channels("flowwarp")


def test_reconstruct_bf16_without_native_bf16_runs_float32(lf_dir, out_dir, no_native_bf16):
    """An AVX2-only CPU: exit 0, one warning line, the result's attributes say fp32, and the result equals
    --precision fp32 byte for byte."""
    stores = {precision: _ingest_lf(lf_dir, out_dir / f"{precision}.zarr") for precision in ("bf16", "fp32")}
    runs = {precision: run_cli(["reconstruct", store.path, "--method", "refsr", "--precision", precision,
                                "--workers", "0", "-q"]) for precision, store in stores.items()}
    for run in runs.values():
        _ok(run)
    warning = [line for line in runs["bf16"].stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and "float32" in warning[0] and AVX2_ONLY_MISSING in warning[0]
    assert runs["fp32"].stderr.strip() == ""
    for store in stores.values():
        assert store.result_attrs("refsr") == {"precision": "fp32", "networks": "sisr+ssnet+ccnet"}
    for index in stores["fp32"].views():
        if index != (0, 0):
            np.testing.assert_array_equal(stores["bf16"].read_result("refsr", index),
                                          stores["fp32"].read_result("refsr", index))
    info = run_cli(["info", stores["bf16"].path])
    _ok(info)
    assert "sr/refsr: 8 views done, precision fp32, networks sisr+ssnet+ccnet" in info.stdout


def test_reconstruct_takes_the_lr_cameras_psf_and_noise_by_hand(lf_dir, out_dir):
    stores = {name: _ingest_lf(lf_dir, out_dir / f"{name}.zarr", "--scale", "2") for name in ("plain", "lens")}
    _ok(run_cli(["reconstruct", stores["plain"].path, "--method", "flowwarp", "--workers", "0", "-q"]))
    _ok(run_cli(["reconstruct", stores["lens"].path, "--method", "flowwarp", "--psf", "gauss:0.8", "--noise", "2",
                 "--workers", "0", "-q"]))
    assert any(not np.array_equal(stores["plain"].read_result("flowwarp", i), stores["lens"].read_result("flowwarp", i))
               for i in stores["plain"].views() if i != (0, 0))
    assert stores["plain"].result_attrs("flowwarp") == {}  # protocol LR views: no camera model
    assert stores["lens"].result_attrs("flowwarp") == {"psf": 0.8, "noise": 2.0}
    assert "psf 0.8, noise 2.0" in run_cli(["info", stores["lens"].path]).stdout
    refused = run_cli(["reconstruct", stores["plain"].path, "--method", "bicubic", "--psf", "gauss:0.8"])
    assert refused.exit_code == 2 and "--psf" in refused.stderr and "camera" in refused.stderr


def test_a_resumed_run_in_another_precision_is_recorded_as_mixed(lf_dir, out_dir, native_bf16):
    store = _ingest_lf(lf_dir, out_dir / "scene.zarr")
    _ok(run_cli(["reconstruct", store.path, "--method", "sisr", "--views", "0,1", "--workers", "0", "-q"]))
    assert store.result_attrs("sisr") == {"precision": "fp32", "networks": "sisr"}
    _ok(run_cli(["reconstruct", store.path, "--method", "sisr", "--precision", "bf16", "--workers", "0", "-q"]))
    assert store.result_attrs("sisr") == {"precision": "mixed (bf16, fp32)", "networks": "sisr"}
    _ok(run_cli(["reconstruct", store.path, "--method", "sisr", "--precision", "bf16", "--workers", "0", "-q",
                 "--overwrite"]))
    assert store.result_attrs("sisr") == {"precision": "bf16", "networks": "sisr"}


def test_reconstruct_two_stores_in_one_call(lf_dir, frames_dir, out_dir):
    lf_store = _ingest_lf(lf_dir, out_dir / "scene.zarr", "--scale", "4")
    _ok(run_cli(["ingest", "video", frames_dir, out_dir / "clip.h5", "-q"]))
    video_store = Store.open(out_dir / "clip.h5")
    expected = (LF_GRID * LF_GRID - 1) + (VIDEO_FRAMES - 1)

    result = run_cli(["reconstruct", lf_store.path, video_store.path, "--method", "bicubic"])
    _ok(result)
    assert f"{expected} views done, 0 already done" in result.stdout
    assert lf_store.done("bicubic").sum() == LF_GRID * LF_GRID - 1 and not lf_store.done("bicubic")[0, 0]
    assert video_store.done("bicubic").tolist() == [False] + [True] * (VIDEO_FRAMES - 1)
    np.testing.assert_array_equal(video_store.read_result("bicubic", (2,)), _bicubic(video_store, (2,)))

    rerun = run_cli(["reconstruct", lf_store.path, video_store.path, "--method", "bicubic", "-q"])
    _ok(rerun)
    assert f"0 views done, {expected} already done" in rerun.stdout


# ---------------------------------------------------------------------------------------------------------------
# eval
# ---------------------------------------------------------------------------------------------------------------


def _check_method_entry(entry: dict, key: str, expected_keys: list) -> None:
    for field in ("psnr_rgb", "psnr_y", "ssim_y", "seconds"):
        assert isinstance(entry[field], float) and np.isfinite(entry[field]), field
    assert 0 < entry["ssim_y"] <= 1 and entry["seconds"] >= 0 and entry["psnr_rgb"] > 5
    assert [row[key] for row in entry["per_view"]] == expected_keys
    for row in entry["per_view"]:
        assert isinstance(row["psnr_rgb"], float) and isinstance(row["psnr_y"], float)
    assert entry["psnr_rgb"] == pytest.approx(np.mean([row["psnr_rgb"] for row in entry["per_view"]]))


def test_eval_lf_json(lf_dir, out_dir):
    json_path = out_dir / "eval.json"
    result = run_cli(["eval", "lf", lf_dir, "--json", json_path, "--methods", "bicubic,flowwarp", "--grid", "2x2"])
    _ok(result)
    assert "bicubic" in result.stdout and "flowwarp" in result.stdout  # the table
    _no_temporaries(out_dir)
    assert sorted(p.name for p in out_dir.iterdir()) == ["eval.json"]

    data = json.loads(json_path.read_text())
    assert data["kind"] == "lf" and data["src"] == str(lf_dir) and data["scale"] == 8
    assert data["grid"] == [2, 2] and data["ref"] == [0, 0] and data["shape_hr"] == list(LF_SIZE)
    assert list(data["methods"]) == ["bicubic", "flowwarp"]
    for entry in data["methods"].values():
        _check_method_entry(entry, "view", [[0, 1], [1, 0], [1, 1]])
    bicubic, flowwarp = data["methods"]["bicubic"], data["methods"]["flowwarp"]
    assert flowwarp["psnr_rgb"] > bicubic["psnr_rgb"] + 1.0  # the reference helps on the synthetic light field
    assert flowwarp["psnr_y"] > bicubic["psnr_y"] and flowwarp["ssim_y"] > bicubic["ssim_y"]


def test_eval_records_the_precision_that_ran(lf_dir, out_dir, no_native_bf16):
    json_path = out_dir / "eval.json"
    result = run_cli(["eval", "lf", lf_dir, "--json", json_path, "--methods", "bicubic,sisr,refsr", "--grid", "2x2",
                      "--precision", "bf16", "-q"])
    _ok(result)
    assert len([line for line in result.stderr.splitlines() if "warning" in line]) == 1
    methods = json.loads(json_path.read_text())["methods"]
    assert "precision" not in methods["bicubic"]
    assert methods["sisr"]["precision"] == methods["refsr"]["precision"] == "fp32"
    # the networks each learned method loaded, named and hashed as the manifest ships them
    from lfrefsr.weights import manifest

    shipped = manifest()
    assert "networks" not in methods["bicubic"]
    assert methods["sisr"]["networks"] == [{"name": "sisr", "sha256": shipped["sisr"]["sha256"]}]  # SPEC's list
    assert {"name": "ssnet", "sha256": shipped["ssnet"]["sha256"]} in methods["refsr"]["networks"]


@pytest.mark.parametrize("command", [["eval", "lf", "{lf}"], ["eval", "video", "{frames}"]])
def test_eval_degrade_records_the_spec_and_scores_against_clean_hr(command, lf_dir, frames_dir, out_dir):
    args = [a.format(lf=lf_dir, frames=frames_dir) for a in command]
    scores = {}
    for name, extra in (("clean", []), ("noisy", ["--degrade", "noise=8,jpeg=60"])):
        _ok(run_cli([*args, "--json", out_dir / f"{name}.json", "--methods", "bicubic,refsr", "-q", *extra]))
        scores[name] = json.loads((out_dir / f"{name}.json").read_text())
    estimate = scores["noisy"]["capture_estimate"]  # None where the fixture's LR views are too small to fit
    camera = {key: estimate[key] for key in ("psf", "noise", "chroma")} if estimate else None
    assert scores["noisy"]["methods"]["refsr"].get("camera") == camera  # refsr ran with the capture's estimate
    assert "camera" not in scores["clean"]["methods"]["refsr"]
    assert "degrade" not in scores["clean"]
    assert scores["noisy"]["degrade"] == {"noise": 8.0, "jpeg": 60, "seed": 0}
    assert "capture_estimate" in scores["noisy"] and "capture_estimate" not in scores["clean"]
    assert scores["noisy"]["methods"]["bicubic"]["psnr_rgb"] < scores["clean"]["methods"]["bicubic"]["psnr_rgb"]


@pytest.mark.parametrize("spec", ["noise=3,jpeg=200", "blur=2", "psf=gauss:x", "gain=1,1"])
def test_a_bad_degrade_spec_is_one_line_exit_2_and_writes_nothing(spec, lf_dir, out_dir):
    result = run_cli(["eval", "lf", lf_dir, "--json", out_dir / "e.json", "--degrade", spec])
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "--degrade" in line and "Traceback" not in result.output
    assert list(out_dir.iterdir()) == []


def test_eval_lf_refsr_light_field_and_per_view(lf_dir, out_dir):
    """--per-view turns refsr's shared-disparity alignment off: on the 3x3 test light field the two differ."""
    psnr = {}
    for flag in ("--lightfield", "--per-view"):
        json_path = out_dir / f"{flag[2:]}.json"
        _ok(run_cli(["eval", "lf", lf_dir, "--json", json_path, "--methods", "refsr", flag, "-q"]))
        psnr[flag] = json.loads(json_path.read_text())["methods"]["refsr"]["psnr_rgb"]
    assert np.isfinite(list(psnr.values())).all() and psnr["--lightfield"] != psnr["--per-view"]
    result = run_cli(["eval", "lf", lf_dir, "--json", out_dir / "x.json", "--methods", "bicubic", "--per-view"])
    assert result.exit_code == 2 and "applies to refsr" in result.stderr


def test_eval_video_json(frames_dir, out_dir):
    json_path = out_dir / "eval.json"
    result = run_cli(["eval", "video", frames_dir, "--json", json_path, "--methods", "bicubic", "-q"])
    _ok(result)
    data = json.loads(json_path.read_text())
    assert data["kind"] == "video" and data["src"] == str(frames_dir) and data["scale"] == 8
    assert data["shape_hr"] == list(VIDEO_SIZE) and list(data["methods"]) == ["bicubic"]
    _check_method_entry(data["methods"]["bicubic"], "frame", list(range(1, VIDEO_FRAMES)))
    pairs = list(range(1, VIDEO_FRAMES - 1))  # (t, t+1) among the scored frames 1..T-1
    assert [row["frame"] for row in data["flicker_hr_per_pair"]] == pairs and data["flicker_hr"] >= 0
    entry = data["methods"]["bicubic"]
    assert [row["frame"] for row in entry["flicker_per_pair"]] == pairs and np.isfinite(entry["flicker"])


def test_eval_video_with_keyframes_scores_the_in_between_frames_from_the_latest_keyframe(frames_dir, out_dir):
    json_path = out_dir / "eval.json"
    _ok(run_cli(["eval", "video", frames_dir, "--json", json_path, "--methods", "flowwarp", "--keyframe-every", "2",
                 "-q"]))
    data = json.loads(json_path.read_text())
    assert data["keyframe_every"] == 2
    in_between = [t for t in range(1, VIDEO_FRAMES) if t % 2]
    _check_method_entry(data["methods"]["flowwarp"], "frame", in_between)


def test_eval_video_with_the_keyframes_on_both_sides(frames_dir, out_dir):
    """Frame 1 between keyframes 0 and 2; frame 3 after the last keyframe takes keyframe 2 alone, said once."""
    json_path = out_dir / "eval.json"
    result = run_cli(["eval", "video", frames_dir, "--json", json_path, "--methods", "flowwarp", "--keyframe-every",
                      "2", "--reference", "keyframes"])
    _ok(result)
    data = json.loads(json_path.read_text())
    assert data["keyframe_every"] == 2 and data["reference"] == "keyframes"
    _check_method_entry(data["methods"]["flowwarp"], "frame", [1, 3])
    (warning,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert "after keyframe 2: frame 3 uses it alone" in warning


# ---------------------------------------------------------------------------------------------------------------
# Usage errors
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    ["ingest", "lf", "{lf}", "{out}/s.zarr"],
    ["ingest", "video", "{frames}", "{out}/s.zarr"],
    ["eval", "lf", "{lf}", "--json", "{out}/e.json"],
    ["eval", "video", "{frames}", "--json", "{out}/e.json"],
])
def test_scale_below_two_is_a_usage_error(command, lf_dir, frames_dir, out_dir):
    args = [a.format(lf=lf_dir, frames=frames_dir, out=out_dir) for a in command]
    result = run_cli([*args, "--scale", "1"])
    assert result.exit_code == 2
    assert "--scale" in result.stderr and "Traceback" not in result.output
    assert list(out_dir.iterdir()) == []


def test_keyframes_reference_is_refused_for_a_light_field_and_without_keyframes(lf_dir, frames_dir, out_dir):
    store = _ingest_lf(lf_dir, out_dir / "scene.zarr")
    before = snapshot(out_dir)
    result = run_cli(["reconstruct", str(store.path), "--method", "flowwarp", "--reference", "keyframes"])
    assert result.exit_code == 1  # the store's kind refuses it, as a store without HR keyframes does
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "keyframes" in line and "light field" in line
    result = run_cli(["eval", "video", frames_dir, "--json", out_dir / "e.json", "--reference", "keyframes"])
    assert result.exit_code == 2 and "--keyframe-every" in result.stderr and "Traceback" not in result.output
    assert snapshot(out_dir) == before


@pytest.mark.parametrize("command", [["reconstruct", "{out}/x.zarr"], ["eval", "lf", "{lf}", "--json", "{out}/e.json"],
                                     ["eval", "match", "{lf}", "--json", "{out}/e.json"], ["bench"]])
def test_an_unknown_precision_is_one_line_and_exit_2(command, lf_dir, out_dir):
    result = run_cli([a.format(lf=lf_dir, out=out_dir) for a in command] + ["--precision", "fp16"])
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "--precision" in line and "fp16" in line and "Traceback" not in result.output
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("command", [
    ["reconstruct", "{store}", "--method", "nosuchmethod"],
    ["eval", "lf", "{lf}", "--json", "{out}/e.json", "--methods", "bicubic,nosuchmethod"],
])
def test_unknown_method_names_the_available_ones(command, lf_dir, out_dir):
    store = _ingest_lf(lf_dir, out_dir / "scene.zarr")
    before = snapshot(out_dir)
    result = run_cli([a.format(store=store.path, lf=lf_dir, out=out_dir) for a in command])
    assert result.exit_code == 2
    assert "nosuchmethod" in result.stderr
    for name in available():
        assert name in result.stderr
    assert snapshot(out_dir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", [
    ["reconstruct", "{store}", "--method", "bicubic"],
    ["eval", "lf", "{lf}", "--json", "{out}/e.json", "--methods", "bicubic"],
])
def test_device_cuda_without_gpu(command, lf_dir, out_dir):
    store = _ingest_lf(lf_dir, out_dir / "scene.zarr")
    before = snapshot(out_dir)
    result = run_cli([*(a.format(store=store.path, lf=lf_dir, out=out_dir) for a in command), "--device", "cuda"])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cuda" in result.stderr.lower() and "gpu" in result.stderr.lower()
    assert "Traceback" not in result.output
    assert snapshot(out_dir) == before


@pytest.mark.slow  # the demo as a user runs it: 30-45 s on 2 cores
def test_demo_runs_the_whole_chain(tmp_path):
    """README's first command ends in `lfrefsr demo`: it must work and print the PSNR table and outputs."""
    result = run_cli(["demo", "--out", str(tmp_path / "demo"), "-q"])
    assert result.exit_code == 0, result.output
    assert "flowwarp" in result.output and "bicubic" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith(("lightfield.zarr", "clip.zarr"))]
    gains = {(row[0], row[1]): float(row[3]) for row in rows}
    assert gains[("lightfield.zarr", "flowwarp")] > 1.0 and gains[("clip.zarr", "flowwarp")] > 1.0
    demo = tmp_path / "demo"
    assert (demo / "lightfield.zarr").is_dir() and (demo / "clip.zarr").is_dir()
    assert (demo / "lightfield_sweep.mp4").stat().st_size > 0 and (demo / "clip.mp4").stat().st_size > 0
    assert (demo / "lightfield_grid" / "grid.png").is_file()


def test_bench_command_reports_every_stage(tmp_path):
    """A smoke run of the benchmark, the smallest case, end to end, from a folder outside the repository as an
    installed package runs (no timing is asserted: benchmarks are not tests)."""
    out = tmp_path / "bench.json"
    command = [sys.executable, "-m", "lfrefsr.cli", "bench", "--size", "64", "--grid", "2", "--json", str(out), "-q"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert len(doc["stages"]) == 16 and all(row["gflop"] >= 0 for row in doc["stages"].values())
    assert doc["refsr_seconds_per_view"] > 0 and doc["refsr_seconds_per_view_lightfield"] > 0
    assert doc["matmul_gflops_fp32"] > 0 and "GFLOP/s" in result.stdout
    assert doc["end_to_end"]["views"] == 3 and doc["precision"] == doc["precision_requested"] == "fp32"
    assert (doc["bf16"] == "native") == (doc["matmul_gflops_bf16"] is not None)


def test_bench_bf16_without_native_bf16_measures_float32(tmp_path, no_native_bf16):
    out = tmp_path / "bench.json"
    result = run_cli(["bench", "--size", "64", "--stages-only", "--precision", "bf16", "--json", str(out), "-q"])
    _ok(result)
    doc = json.loads(out.read_text())
    assert doc["precision"] == "fp32" and doc["precision_requested"] == "bf16"
    assert doc["bf16"] == "not native on this CPU" and doc["matmul_gflops_bf16"] is None
    assert "bf16 not native on this CPU" in result.stdout and "stages in fp32" in result.stdout
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1
