"""A catalogue of bad inputs, each through the command line: a short, precise error and nothing left behind.

Every case asserts: non-zero exit (2 for usage errors); no traceback; at most 3 lines on stderr that name the problem
(a keyword per case) and the offending file, folder or option; nothing at the output path and nothing else in the
output folder (an existing output is left exactly as it was); the input untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli, snapshot

from lfrefsr.errors import InputError
from lfrefsr.io.images import write_image

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Setup:
    args: list
    keyword: str  # names the problem (case-insensitive)
    culprit: Path | str  # the file, folder or option the message must name
    output: Path  # must not exist afterwards, or be unchanged when it existed before
    inputs: list = field(default_factory=list)  # folders that must be left untouched
    exit_code: int = 1


class Env:
    """Lazy access to the conftest fixtures, so each case copies only the data it uses."""

    def __init__(self, request):
        self._request = request

    def __getattr__(self, name):
        return self._request.getfixturevalue(name)

    def input_path(self, name: str) -> Path:
        """A path for a damaged input file, in a folder beside (not inside) the output folder."""
        folder = self.tmp_path / "in"
        folder.mkdir(exist_ok=True)
        return folder / name

    def ingest(self, src: Path, store: Path) -> Path:
        result = run_cli(["ingest", "lf", src, store, "-q"])
        assert result.exit_code == 0, result.stderr
        return store


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set_layout(store: Path, version: int) -> None:
    if store.suffix == ".h5":
        with h5py.File(store, "r+") as handle:
            attrs = json.loads(handle.attrs["lfrefsr"])
            attrs["lfrefsr_layout"] = version
            handle.attrs["lfrefsr"] = json.dumps(attrs)
        return
    meta = store / "zarr.json"
    group = json.loads(meta.read_text())
    group["attributes"]["lfrefsr_layout"] = version
    meta.write_text(json.dumps(group))


# ---------------------------------------------------------------------------------------------------------------
# The catalogue: each function damages a copy of the data and says what must happen
# ---------------------------------------------------------------------------------------------------------------

CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


@case
def missing_view(env):
    (env.lf_dir / "view_01_01.png").unlink()
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out], "missing", env.lf_dir, out, [env.lf_dir])


@case
def missing_view_hci_not_square(env):
    (env.hci_dir / "input_Cam008.png").unlink()
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.hci_dir, out], "square", env.hci_dir, out, [env.hci_dir])


@case
def views_of_different_sizes(env):
    odd = env.lf_dir / "view_01_02.png"
    write_image(odd, env.lf_hr[1, 2][:, :24, :])
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out], "different sizes", odd, out, [env.lf_dir])


@case
def garbage_with_an_image_name(env):
    bad = env.lf_dir / "view_00_01.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out], "not a readable image", bad, out, [env.lf_dir])


@case
def truncated_png(env):
    bad = env.lf_dir / "view_01_01.png"  # not the first view: fails while the store is being written
    _truncate(bad)
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out], "truncated", bad, out, [env.lf_dir])


@case
def truncated_png_hdf5(env):
    bad = env.lf_dir / "view_02_01.png"
    _truncate(bad)
    out = env.out_dir / "s.h5"
    return Setup(["ingest", "lf", env.lf_dir, out], "truncated", bad, out, [env.lf_dir])


@case
def empty_folder(env):
    empty = env.tmp_path / "in" / "empty_views"
    empty.mkdir(parents=True)
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", empty, out], "no light-field views", empty, out, [empty])


@case
def grid_larger_than_data(env):
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out, "--grid", "4x4"], "larger than the data", env.lf_dir, out,
                 [env.lf_dir])


@case
def scale_below_two(env):
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out, "--scale", "1"], "scale must be", "--scale", out, [env.lf_dir],
                 exit_code=2)


@case
def scale_larger_than_image(env):
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out, "--scale", "64"], "larger than the image", env.lf_dir, out,
                 [env.lf_dir])


@case
def reference_outside_grid(env):
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out, "--ref", "5,5"], "outside", env.lf_dir, out, [env.lf_dir])


@case
def existing_output_without_overwrite(env):
    out = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    return Setup(["ingest", "lf", env.lf_dir, out], "exists", out, out, [env.lf_dir])


@case
def existing_output_overwrite_with_bad_input(env):
    out = env.ingest(env.lf_dir, env.out_dir / "s.h5")
    bad = env.lf_dir / "view_02_02.png"
    _truncate(bad)
    return Setup(["ingest", "lf", env.lf_dir, out, "--overwrite"], "truncated", bad, out, [env.lf_dir])


@case
def video_with_one_frame(env):
    for frame in sorted(env.frames_dir.glob("frame_*.png"))[1:]:
        frame.unlink()
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "video", env.frames_dir, out], "at least 2 frames", env.frames_dir, out,
                 [env.frames_dir])


@case
def video_with_one_frame_hdf5(env):
    for frame in sorted(env.frames_dir.glob("frame_*.png"))[1:]:
        frame.unlink()
    out = env.out_dir / "s.h5"
    return Setup(["ingest", "video", env.frames_dir, out], "at least 2 frames", env.frames_dir, out,
                 [env.frames_dir])


@case
def video_empty_folder(env):
    empty = env.tmp_path / "in" / "no_frames"
    empty.mkdir(parents=True)
    (empty / "readme.txt").write_text("no frames here\n")
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "video", empty, out], "no image frames", empty, out, [empty])


@case
def video_frames_of_different_sizes(env):
    odd = env.frames_dir / "frame_0002.png"
    write_image(odd, env.video_hr[2][:, :24, :])
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "video", env.frames_dir, out], "different sizes", odd, out, [env.frames_dir])


@case
def video_truncated_frame_hdf5(env):
    bad = env.frames_dir / "frame_0002.png"
    _truncate(bad)
    out = env.out_dir / "s.h5"
    return Setup(["ingest", "video", env.frames_dir, out], "truncated", bad, out, [env.frames_dir])


@case
def missing_input_lf(env):
    missing = env.tmp_path / "in" / "no_such_views"
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", missing, out], "not found", missing, out)


@case
def missing_input_video(env):
    missing = env.tmp_path / "in" / "no_such_clip.mp4"
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "video", missing, out], "not found", missing, out)


@case
def eval_lf_missing_view(env):
    (env.lf_dir / "view_02_00.png").unlink()
    out = env.out_dir / "eval.json"
    return Setup(["eval", "lf", env.lf_dir, "--json", out, "--methods", "bicubic"], "missing", env.lf_dir, out,
                 [env.lf_dir])


@case
def reconstruct_missing_store(env):
    missing = env.out_dir / "no_such_store.zarr"
    return Setup(["reconstruct", missing, "--method", "bicubic"], "not found", missing, missing)


@case
def reconstruct_missing_store_hdf5(env):
    missing = env.out_dir / "no_such_store.h5"
    return Setup(["reconstruct", missing, "--method", "bicubic"], "not found", missing, missing)


@case
def reconstruct_unknown_layout(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    _set_layout(store, 99)
    return Setup(["reconstruct", store, "--method", "bicubic"], "layout version 99", store, store)


@case
def reconstruct_unknown_layout_hdf5(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.h5")
    _set_layout(store, 99)
    return Setup(["reconstruct", store, "--method", "bicubic"], "layout version 99", store, store)


@case
def reconstruct_corrupted_zarr_metadata(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    (store / "zarr.json").write_text("{ not json")
    return Setup(["reconstruct", store, "--method", "bicubic", "--workers", "0"], "corrupted", store, store)


@case
def reconstruct_truncated_hdf5(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.h5")
    _truncate(store)
    return Setup(["reconstruct", store, "--method", "bicubic", "--workers", "0"], "HDF5", store, store)


@case
def nan_in_float_input(env):
    import tifffile

    bad = env.lf_dir / "view_01_00.tif"
    (env.lf_dir / "view_01_00.png").unlink()
    image = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    image[3, 4, 1] = np.nan
    tifffile.imwrite(bad, image)
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.lf_dir, out], "NaN", bad, out, [env.lf_dir])


@case
def bad_scheduler_address(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    return Setup(["reconstruct", store, "--method", "bicubic", "--scheduler", "nonsense://"], "scheduler",
                 "nonsense://", store)


@case
def weights_of_another_architecture(env):
    import torch

    from lfrefsr.models.srresnet import SRResNetNN

    weights = env.input_path("sisr.pt")
    torch.save({"model_config": {"name": "srresnet", "num_blocks": 1, "features": 8},
                "state_dict": SRResNetNN(num_blocks=1, features=8).state_dict()}, weights)
    out = env.out_dir / "m.json"
    folder = _match_pair(env)
    return Setup(["eval", "match", folder, "--json", out, "--methods", "ccnet", "--weights", weights],
                 "not 'ccnet'", weights, out)


@case
def weights_that_are_a_malicious_pickle(env):
    import pickle

    weights = env.input_path("evil.pt")
    weights.write_bytes(pickle.dumps({"state_dict": _Evil(), "model_config": {"name": "ccnet"}}))
    out = env.out_dir / "m.json"
    folder = _match_pair(env)
    return Setup(["eval", "match", folder, "--json", out, "--methods", "ccnet", "--weights", weights],
                 "only plain tensors", weights, out)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/lfrefsr-pwned",))


def _match_pair(env) -> Path:
    from lfrefsr.io.flow import write_flo

    folder = env.tmp_path / "in" / "pair"
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "target.png", env.lf_hr[1, 1])
    write_image(folder / "reference.png", env.lf_hr[0, 0])
    write_flo(folder / "flow.flo", np.zeros((2, *env.lf_hr.shape[-2:]), np.float32))
    return folder


@case
def reconstruct_with_an_unusable_method(env):
    """A learned method whose weights cannot be loaded fails once, up front, not once per view."""
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    weights = env.input_path("junk.pt")
    weights.write_bytes(b"not a checkpoint")
    return Setup(["reconstruct", store, "--method", "sisr", "--weights", weights], "weights", weights, store)


@case
def extra_view_hci(env):
    """An 82nd file in a 9x9 HCI folder: the grid no longer adds up."""
    extra = env.hci_dir / f"input_Cam{len(list(env.hci_dir.glob('input_Cam*.png'))):03d}.png"
    write_image(extra, env.lf_hr[0, 0])
    out = env.out_dir / "s.zarr"
    return Setup(["ingest", "lf", env.hci_dir, out], "square", env.hci_dir, out, [env.hci_dir])


@case
def unsupported_container(env):
    clip = env.input_path("clip.mp4")
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    out = env.out_dir / "v.zarr"
    return Setup(["ingest", "video", clip, out], "video", clip, out, [clip.parent])


@case
def video_with_zero_frames(env):
    import av

    clip = env.input_path("empty.mkv")
    container = av.open(str(clip), "w")
    stream = container.add_stream("ffv1", rate=10)
    stream.width, stream.height, stream.pix_fmt = 32, 32, "bgr0"
    container.start_encoding()  # a header and no packet
    container.close()
    out = env.out_dir / "v.zarr"
    return Setup(["ingest", "video", clip, out], "video", clip, out, [clip.parent])


@case
def malformed_config_yaml(env):
    config = env.input_path("bad.yaml")
    config.write_text("model: [name: ccnet\ntrain: {steps: 2\n")
    out = env.out_dir / "run"
    return Setup(["train", "ccnet", "--config", config, "--out", out], "malformed YAML", config, out)


@case
def unknown_refsr_variant(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    return Setup(["reconstruct", store, "--method", "refsr", "--variant", "fancy"], "fancy", "--variant", store,
                 exit_code=2)


@case
def light_field_alignment_for_a_method_without_it(env):
    store = env.ingest(env.lf_dir, env.out_dir / "s.zarr")
    return Setup(["reconstruct", store, "--method", "flowwarp", "--per-view"], "no light-field alignment",
                 "--lightfield", store, exit_code=2)


@case
def encode_a_result_the_store_lacks(env):
    store = env.ingest(env.lf_dir, env.input_path("s.zarr"))
    out = env.out_dir / "png"
    return Setup(["encode", store, out, "--method", "refsr"], "no sr/refsr", store, out, [store])


@case
def eval_video_of_one_frame(env):
    for frame in sorted(env.frames_dir.glob("frame_*.png"))[1:]:
        frame.unlink()
    out = env.out_dir / "v.json"
    return Setup(["eval", "video", env.frames_dir, "--json", out, "--methods", "bicubic"], "at least 2 frames",
                 env.frames_dir, out, [env.frames_dir])


@case
def eval_with_a_bad_method_option(env):
    """One line; refused before the source is read (test_a_bad_method_option_is_refused_before_the_source_is_read)."""
    out = env.out_dir / "v.json"
    return Setup(["eval", "video", env.frames_dir, "--json", out, "--methods", "bicubic,sisr",
                  "-o", "back_project=-1"], "0 or more", "back_project=-1", out, [env.frames_dir])


@case
def eval_with_unloadable_weights(env):
    """Checked once before any view runs, not reported as a failure per view."""
    weights = env.input_path("junk.pt")
    weights.write_bytes(b"not a checkpoint")
    out = env.out_dir / "e.json"
    return Setup(["eval", "lf", env.lf_dir, "--json", out, "--methods", "bicubic,sisr", "--weights", weights],
                 "weights", weights, out, [env.lf_dir])


# ---------------------------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------------------------


def _stderr_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.strip()]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, request):
    env = Env(request)
    setup = CASES[name](env)
    out_dir = env.out_dir
    existed = setup.output.exists()
    outputs_before = snapshot(out_dir)
    inputs_before = {str(folder): snapshot(folder) for folder in setup.inputs}

    result = run_cli(setup.args)

    report = f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.exit_code == setup.exit_code, report
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"uncaught {result.exception!r}\n{report}"
    assert "Traceback" not in result.output, report
    lines = _stderr_lines(result.stderr)
    assert 1 <= len(lines) <= 3, report
    assert setup.keyword.lower() in result.stderr.lower(), report
    assert str(setup.culprit) in result.stderr, report

    if existed:  # left exactly as it was, and nothing beside it
        assert snapshot(out_dir) == outputs_before, report
    else:
        assert not setup.output.exists(), report
        assert sorted(p.name for p in out_dir.iterdir()) == [], report  # no temporary siblings, no locks
    for folder, before in inputs_before.items():
        assert snapshot(Path(folder)) == before, f"input {folder} changed"


def test_verbose_shows_the_traceback(lf_dir, out_dir):
    """-v re-raises the error: the in-process runner sees the exception, a real process prints the traceback."""
    out = out_dir / "s.zarr"
    args = ["ingest", "lf", lf_dir, out, "--ref", "5,5", "-v"]
    before = snapshot(lf_dir)

    result = run_cli(args)
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError) and "outside" in str(result.exception)
    assert result.exc_info[2] is not None

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [sys.executable, "-c", "from lfrefsr.cli import main; main()", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=out_dir, timeout=120,
    )
    assert process.returncode != 0
    assert "Traceback" in process.stderr
    assert "InputError" in process.stderr and "outside" in process.stderr and str(lf_dir) in process.stderr
    assert not out.exists() and list(out_dir.iterdir()) == []
    assert snapshot(lf_dir) == before


@pytest.mark.parametrize("error,message", [
    ("ENOSPC", "No space left on device"),  # a full disk
    ("EACCES", "Permission denied"),  # a read-only output (tests may run as root, which chmod cannot stop)
])
def test_a_write_error_is_one_line_and_leaves_nothing(lf_dir, out_dir, monkeypatch, error, message):
    """A write error injected into the store while ingesting."""
    import errno

    from lfrefsr.io.store import Store

    def failing(self, name, index, data):
        raise OSError(getattr(errno, error), message, str(self.path))

    monkeypatch.setattr(Store, "write", failing)
    before = snapshot(lf_dir)
    result = run_cli(["ingest", "lf", str(lf_dir), str(out_dir / "s.zarr"), "--scale", "8", "-q"])
    assert result.exit_code != 0
    assert message in result.stderr and "s.zarr" in result.stderr and ".tmp-" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert list(out_dir.iterdir()) == [] and snapshot(lf_dir) == before


def test_an_unreachable_scheduler_is_one_line(lf_dir, out_dir):
    ingest = run_cli(["ingest", "lf", str(lf_dir), str(out_dir / "s.zarr"), "--scale", "8", "-q"])
    assert ingest.exit_code == 0
    result = run_cli(["reconstruct", str(out_dir / "s.zarr"), "--method", "bicubic", "--scheduler",
                      "tcp://127.0.0.1:1", "-q"])
    assert result.exit_code != 0 and "scheduler" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    from lfrefsr.io.store import Store

    assert Store.open(out_dir / "s.zarr").methods() in ([], ["bicubic"])
    assert not Store.open(out_dir / "s.zarr").done("bicubic").any()


@pytest.mark.parametrize("kind", ["lf", "video"])
def test_a_bad_method_option_is_refused_before_the_source_is_read(kind, monkeypatch):
    """A wrong method option costs no ingest: a long light field or clip is not read only to be refused."""
    from lfrefsr import evaluate
    from lfrefsr.errors import LfrefsrError

    def ingest(*args, **kwargs):
        raise AssertionError("the source was read before the options were checked")

    monkeypatch.setattr(evaluate, f"ingest_{kind}", ingest)
    run = evaluate.evaluate_lf if kind == "lf" else evaluate.evaluate_video
    with pytest.raises(LfrefsrError, match="back_project=-1"):
        run("unread", ["bicubic", "sisr"], method_options={"sisr": {"back_project": -1}}, progress=False)
