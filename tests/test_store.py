"""Stores: zarr and HDF5 hold one layout; lazy reads equal eager ones; done-markers; unknown layouts refused."""

import json

import numpy as np
import pytest

from lfrefsr.axes import Kind
from lfrefsr.errors import StoreError
from lfrefsr.io.store import Store

BACKENDS = ["s.zarr", "s.h5"]


def _create(path, kind=Kind.LF, view_shape=(2, 3), dtype=np.uint8):
    return Store.create(path, kind=kind, view_shape=view_shape, shape_hr=(16, 24), scale=4, dtype=dtype,
                        ref=(0, 0) if kind != Kind.VIDEO else None, hr_known=np.ones(view_shape, bool),
                        source="test")


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind,view_shape", [(Kind.LF, (2, 3)), (Kind.VIDEO, (4,)), (Kind.LFVIDEO, (2, 2, 2))])
def test_round_trip_every_kind(tmp_path, name, kind, view_shape):
    store = _create(tmp_path / name, kind, view_shape, np.uint16)
    rng = np.random.default_rng(0)
    data = {index: rng.integers(0, 65535, (3, 16, 24), dtype=np.uint16) for index in store.views()}
    for index, hr in data.items():
        store.write("hr", index, hr)
        store.write("lr", index, hr[:, ::4, ::4].copy())
    reopened = Store.open(tmp_path / name)
    assert reopened.kind == kind and reopened.view_shape == view_shape and reopened.dtype == np.uint16
    assert reopened.attrs["axes"] == list(kind.axes)
    assert reopened.attrs["lfrefsr_version"]
    for index, hr in data.items():
        np.testing.assert_array_equal(reopened.read("hr", index), hr)
    lazy = reopened.lazy("hr")
    assert lazy.chunksize == (*(1,) * len(view_shape), 3, 16, 24)  # one chunk per view
    eager = np.stack([data[i] for i in store.views()]).reshape(*view_shape, 3, 16, 24)
    np.testing.assert_array_equal(lazy.compute(), eager)


@pytest.mark.parametrize("name", BACKENDS)
def test_results_and_done_markers(tmp_path, name):
    store = _create(tmp_path / name)
    store.ensure_result("bicubic")
    assert not store.done("bicubic").any()
    sr = np.full((3, 16, 24), 7, np.uint8)
    store.write_result("bicubic", (1, 2), sr)
    done = store.done("bicubic")
    assert done[1, 2] and done.sum() == 1
    np.testing.assert_array_equal(store.read_result("bicubic", (1, 2)), sr)
    assert store.methods() == ["bicubic"]
    store.ensure_result("bicubic")  # idempotent: keeps what is there
    assert store.done("bicubic")[1, 2]
    store.clear_result("bicubic")
    assert not store.done("bicubic").any()


@pytest.mark.parametrize("name", BACKENDS)
def test_confidences_are_written_before_the_done_marker_and_cleared_with_the_result(tmp_path, name):
    store = _create(tmp_path / name)
    store.ensure_result("m", confidence=("trust", "reference"))
    assert store.confidence_channels("m") == ["trust", "reference"] and store.confidence_channels("other") == []
    sr = np.zeros(store.array_shape("sr")[2:], np.uint8)
    confidence = np.random.default_rng(0).random((2, 16, 24)).astype(np.float32)
    store.write_result("m", (1, 2), sr, confidence)
    assert store.done("m")[1, 2]
    np.testing.assert_allclose(store.read_confidence("m", (1, 2)), confidence, atol=0.5 / 255 + 1e-6)
    store.clear_result("m")
    assert store.confidence_channels("m") == [] and not store.done("m").any()


def test_write_refuses_wrong_shape_or_dtype(tmp_path):
    store = _create(tmp_path / "s.zarr")
    with pytest.raises(ValueError):
        store.write("hr", (0, 0), np.zeros((3, 16, 23), np.uint8))
    with pytest.raises(ValueError):
        store.write("hr", (0, 0), np.zeros((3, 16, 24), np.uint16))


def test_unknown_layout_version_is_refused(tmp_path):
    _create(tmp_path / "s.zarr")
    meta = tmp_path / "s.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["lfrefsr_layout"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="unknown store layout version 99"):
        Store.open(tmp_path / "s.zarr")


def test_missing_and_foreign_stores(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        Store.open(tmp_path / "nothing.zarr")
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    with pytest.raises(StoreError, match="not an lfrefsr store"):
        Store.open(tmp_path / "other.zarr")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(StoreError, match="HDF5"):
        Store.open(tmp_path / "junk.h5")


def test_store_objects_pickle(tmp_path):
    import pickle

    store = _create(tmp_path / "s.zarr")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.path == store.path and clone.view_shape == store.view_shape


@pytest.mark.parametrize("name", BACKENDS)
def test_lazy_pipeline_equals_eager(tmp_path, name):
    """hr (lazy, per-view chunks) -> protocol LR per chunk -> written lazily: equals the eager computation."""
    from lfrefsr import protocol

    store = _create(tmp_path / name)
    rng = np.random.default_rng(1)
    for index in store.views():
        store.write("hr", index, rng.integers(0, 255, (3, 16, 24), dtype=np.uint8))
    lazy_lr = store.lazy("hr").map_blocks(lambda block: protocol.make_lr(block, 4), chunks=(1, 1, 3, 4, 6),
                                          dtype=np.uint8)
    delayed = store.store_lazy("lr", lazy_lr, compute=False)
    assert not store.read("lr", (1, 2)).any()  # nothing written until computed
    delayed.compute()
    for index in store.views():
        np.testing.assert_array_equal(store.read("lr", index), protocol.make_lr(store.read("hr", index), 4))
