"""Property tests (hypothesis): file readers never crash on arbitrary bytes, round trips hold, the layout parser
maps names to grid positions exactly, and store attributes survive any valid metadata."""

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfrefsr.errors import InputError, StoreError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.binary(max_size=300))
def test_flo_reader_refuses_junk_cleanly(tmp_path, data):
    from lfrefsr.io.flow import read_flo

    path = tmp_path / "junk.flo"
    path.write_bytes(data)
    try:
        flow = read_flo(path)
    except InputError as exc:
        assert "junk.flo" in str(exc)
    else:  # only a well-formed file is accepted
        assert flow.ndim == 3 and flow.shape[0] == 2


@FAST
@given(st.binary(max_size=300))
def test_pfm_reader_refuses_junk_cleanly(tmp_path, data):
    from lfrefsr.io.flow import read_pfm

    path = tmp_path / "junk.pfm"
    path.write_bytes(data)
    try:
        read_pfm(path)
    except InputError as exc:
        assert "junk.pfm" in str(exc)


@FAST
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_flo_and_pfm_round_trips(tmp_path, height, width, seed):
    from lfrefsr.io.flow import read_flo, read_pfm, write_flo, write_pfm

    rng = np.random.default_rng(seed)
    flow = rng.standard_normal((2, height, width)).astype(np.float32) * 100
    write_flo(tmp_path / "f.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo"), flow)
    disparity = rng.standard_normal((height, width)).astype(np.float32)
    write_pfm(tmp_path / "d.pfm", disparity)
    np.testing.assert_array_equal(read_pfm(tmp_path / "d.pfm"), disparity)


prefixes = st.text(alphabet=string.ascii_letters, min_size=1, max_size=6).filter(lambda s: s != "view")


@FAST
@given(st.integers(1, 4), st.integers(1, 4), prefixes, st.sampled_from(["view", "lytro", "pattern"]))
def test_layout_parser_maps_names_to_positions(tmp_path_factory, rows, cols, prefix, layout):
    from lfrefsr.io import layouts

    folder = tmp_path_factory.mktemp("lf")
    names = {
        "view": lambda u, v: f"view_{u:02d}_{v:02d}.png",
        "lytro": lambda u, v: f"{prefix}_{u + 1:02d}_{v + 1:02d}.png",
        "pattern": lambda u, v: f"{prefix}-{u}x{v}.png",
    }[layout]
    for u in range(rows):
        for v in range(cols):
            (folder / names(u, v)).write_bytes(b"")
    (folder / "README.txt").write_text("not a view")
    options = {"pattern": f"{prefix}-{{u}}x{{v}}.png"} if layout == "pattern" else {}
    found = layouts.detect(folder, **options)
    assert (found.rows, found.cols) == (rows, cols)
    assert all(found.files[(u, v)].name == names(u, v) for u in range(rows) for v in range(cols))


@FAST
@given(st.sampled_from(["../x{u}_{v}.png", "a/{u}_{v}.png", "{u}.png", "plain.png"]))
def test_patterns_cannot_escape_or_be_incomplete(tmp_path, pattern):
    from lfrefsr.io import layouts

    with pytest.raises(InputError):
        layouts.detect(tmp_path, pattern=pattern)


@FAST
@given(
    st.sampled_from(["lf", "video", "lfvideo"]),
    st.lists(st.integers(1, 3), min_size=3, max_size=3),
    st.sampled_from(["uint8", "uint16"]),
    st.integers(1, 3).map(lambda k: 2**k),
    st.text(max_size=20),
)
def test_store_attributes_survive(tmp_path_factory, kind, dims, dtype, scale, source):
    from lfrefsr.axes import Kind
    from lfrefsr.io.store import Store

    kind = Kind(kind)
    view_shape = tuple(dims[: len(kind.view_axes)])
    hr_known = np.random.default_rng(sum(dims)).random(view_shape) < 0.5
    path = tmp_path_factory.mktemp("s") / "s.zarr"
    store = Store.create(path, kind=kind, view_shape=view_shape, shape_hr=(scale * 2, scale * 3), scale=scale,
                         dtype=dtype, ref=None if kind == Kind.VIDEO else (0, 0), hr_known=hr_known, source=source)
    again = Store.open(path)
    assert again.kind == kind and again.view_shape == view_shape and again.dtype == np.dtype(dtype)
    assert again.attrs["axes"] == list(kind.axes) and again.attrs["source"] == source
    np.testing.assert_array_equal(again.hr_known, hr_known)
    assert again.shape_lr == (2, 3)
    assert store == again


def test_an_lfrefsr_store_needs_its_layout_attribute(tmp_path):
    import zarr

    from lfrefsr.io.store import Store

    zarr.open_group(str(tmp_path / "x.zarr"), mode="w").attrs.update({"kind": "lf"})
    with pytest.raises(StoreError):
        Store.open(tmp_path / "x.zarr")
