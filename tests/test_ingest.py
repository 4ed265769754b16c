"""Layouts, conversions, hybrid captures, light-field video and video files at the library level."""

import numpy as np
import pytest

from lfrefsr import protocol
from lfrefsr.axes import Kind
from lfrefsr.errors import InputError
from lfrefsr.io import layouts
from lfrefsr.io.images import read_image, write_image
from lfrefsr.io.ingest import ingest_lf, ingest_video

RNG = np.random.default_rng(0)


def _views(rows, cols, size=(16, 16), dtype=np.uint8):
    peak = np.iinfo(dtype).max
    return {(u, v): RNG.integers(0, peak, (3, *size), dtype=dtype) for u in range(rows) for v in range(cols)}


def _write(folder, views, name):
    folder.mkdir(parents=True, exist_ok=True)
    for (u, v), image in views.items():
        write_image(folder / name(u, v), image)


NAMINGS = {
    "hci": (lambda u, v, n: f"input_Cam{u * n + v:03d}.png", {}),
    "view": (lambda u, v, n: f"view_{u:02d}_{v:02d}.png", {}),
    "lytro": (lambda u, v, n: f"Flower_{u + 1:02d}_{v + 1:02d}.png", {}),
    "pattern-uv": (lambda u, v, n: f"img-r{u}-c{v}.png", {"pattern": "img-r{u}-c{v}.png"}),
    "pattern-index": (lambda u, v, n: f"cam{u * n + v + 1}.png", {"pattern": "cam{index}.png", "index_base": 1}),
}


@pytest.mark.parametrize("layout", sorted(NAMINGS))
def test_every_layout_is_read_with_the_right_grid_positions(tmp_path, layout):
    name, options = NAMINGS[layout]
    views = _views(3, 3)
    _write(tmp_path / "src", views, lambda u, v: name(u, v, 3))
    (tmp_path / "src" / "LICENSE.txt").write_text("ignored")
    found = layouts.detect(tmp_path / "src", **options)
    assert (found.rows, found.cols) == (3, 3)
    store = ingest_lf(tmp_path / "src", tmp_path / "lf.zarr", scale=4, progress=False, **options)
    for index, hr in views.items():
        np.testing.assert_array_equal(store.read("hr", index), hr)
        np.testing.assert_array_equal(store.read("lr", index), protocol.make_lr(hr, 4))


def test_grid_and_origin_cut_a_sub_grid(tmp_path):
    views = _views(4, 5)
    _write(tmp_path / "src", views, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    store = ingest_lf(tmp_path / "src", tmp_path / "lf.h5", grid=(2, 3), origin=(1, 2), scale=4, progress=False)
    assert store.view_shape == (2, 3)
    np.testing.assert_array_equal(store.read("hr", (0, 0)), views[(1, 2)])
    np.testing.assert_array_equal(store.read("hr", (1, 2)), views[(2, 4)])


def test_default_grid_is_8x8_or_smaller(tmp_path):
    _write(tmp_path / "src", _views(9, 9, (8, 8)), lambda u, v: f"input_Cam{u * 9 + v:03d}.png")
    assert layouts.detect(tmp_path / "src").cut(None, (0, 0)).rows == 8


def test_gray_rgba_and_16_bit_are_converted(tmp_path):
    import cv2

    folder = tmp_path / "src"
    folder.mkdir()
    gray = RNG.integers(0, 255, (16, 16), dtype=np.uint8)
    cv2.imwrite(str(folder / "view_00_00.png"), gray)
    rgba = RNG.integers(0, 255, (16, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(folder / "view_00_01.png"), rgba)
    np.testing.assert_array_equal(read_image(folder / "view_00_00.png"), np.stack([gray] * 3))
    np.testing.assert_array_equal(read_image(folder / "view_00_01.png"), rgba[:, :, [2, 1, 0]].transpose(2, 0, 1))
    deep = RNG.integers(0, 65535, (16, 16, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, deep[:, :, ::-1].transpose(2, 0, 1))


def test_16_bit_light_field_stays_16_bit(tmp_path):
    _write(tmp_path / "src", _views(2, 2, dtype=np.uint16), lambda u, v: f"view_{u:02d}_{v:02d}.png")
    store = ingest_lf(tmp_path / "src", tmp_path / "lf.zarr", scale=4, progress=False)
    assert store.dtype == np.uint16 and store.attrs["dtype"] == "uint16"


def test_hybrid_capture_with_real_lr_views(tmp_path):
    hr_views = _views(2, 2, (32, 32))
    lr_views = _views(2, 2, (8, 8))
    _write(tmp_path / "hr", {(0, 0): hr_views[(0, 0)]}, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    _write(tmp_path / "hr", {(1, 1): hr_views[(1, 1)]}, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    _write(tmp_path / "hr", {(0, 1): hr_views[(0, 1)], (1, 0): hr_views[(1, 0)]},
           lambda u, v: f"view_{u:02d}_{v:02d}.png")
    _write(tmp_path / "lr", lr_views, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    store = ingest_lf(tmp_path / "hr", tmp_path / "h.zarr", scale=4, lr_dir=tmp_path / "lr", progress=False)
    assert store.hr_known.tolist() == [[True, False], [False, False]]
    np.testing.assert_array_equal(store.read("lr", (1, 1)), lr_views[(1, 1)])
    np.testing.assert_array_equal(store.read("hr", (0, 0)), hr_views[(0, 0)])
    assert store.attrs["hybrid"] is True


def test_folder_of_captures_is_a_light_field_video(tmp_path):
    captures = [_views(2, 2) for _ in range(3)]
    for t, views in enumerate(captures):
        _write(tmp_path / "src" / f"capture_{t}", views, lambda u, v: f"view_{u:02d}_{v:02d}.png")
    store = ingest_lf(tmp_path / "src", tmp_path / "lfv.zarr", scale=4, progress=False)
    assert store.kind == Kind.LFVIDEO and store.view_shape == (3, 2, 2)
    assert store.attrs["axes"] == ["t", "u", "v", "c", "y", "x"]
    np.testing.assert_array_equal(store.read("hr", (2, 1, 0)), captures[2][(1, 0)])


def _write_video(path, frames, codec="ffv1", pix_fmt="bgr0"):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[3], frames.shape[2], pix_fmt
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.transpose(1, 2, 0)), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())


@pytest.mark.parametrize("name", ["v.zarr", "v.h5"])
def test_video_file_through_pyav_with_keyframes(tmp_path, name):
    frames = RNG.integers(0, 255, (5, 3, 20, 36), dtype=np.uint8)
    _write_video(tmp_path / "clip.mkv", frames)
    store = ingest_video(tmp_path / "clip.mkv", tmp_path / name, scale=4, keyframe_every=2, progress=False)
    assert store.view_shape == (5,) and store.shape_hr == (20, 36)
    assert store.hr_known.tolist() == [True, False, True, False, True]
    np.testing.assert_array_equal(store.read("hr", (2,)), frames[2])  # FFV1 is lossless
    assert store.lazy("lr").shape == (5, 3, 5, 9)
    short = ingest_video(tmp_path / "clip.mkv", tmp_path / ("s" + name), scale=4, max_frames=3, progress=False)
    assert short.view_shape == (3,)


def test_not_a_video_file(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="x.mp4"):
        ingest_video(tmp_path / "x.mp4", tmp_path / "v.zarr", progress=False)
    assert not (tmp_path / "v.zarr").exists()
