import numpy as np
import pytest

from lfrefsr.errors import InputError
from lfrefsr.io.flow import read_flo, read_pfm, write_flo, write_pfm


def test_flo_round_trip(tmp_path):
    flow = np.random.default_rng(0).standard_normal((2, 5, 7)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "a.flo"), flow)


def test_flo_layout_is_middlebury(tmp_path):
    raw = np.array([202021.25], "<f4").tobytes() + np.array([2, 1], "<i4").tobytes()
    raw += np.array([1, 2, 3, 4], "<f4").tobytes()  # (x0: u=1 v=2), (x1: u=3 v=4)
    (tmp_path / "b.flo").write_bytes(raw)
    flow = read_flo(tmp_path / "b.flo")
    assert flow.shape == (2, 1, 2)
    np.testing.assert_array_equal(flow[0, 0], [1, 3])
    np.testing.assert_array_equal(flow[1, 0], [2, 4])


@pytest.mark.parametrize("damage", ["magic", "truncated", "header", "empty"])
def test_malformed_flo_gives_a_clear_error(tmp_path, damage):
    path = tmp_path / "bad.flo"
    write_flo(path, np.zeros((2, 4, 4), np.float32))
    raw = path.read_bytes()
    raw = {"magic": b"XXXX" + raw[4:], "truncated": raw[:-8], "header": raw[:4] + b"\xff" * 8 + raw[12:],
           "empty": b""}[damage]
    path.write_bytes(raw)
    with pytest.raises(InputError) as info:
        read_flo(path)
    assert "bad.flo" in str(info.value)


def test_pfm_round_trip_and_bottom_up_rows(tmp_path):
    disparity = np.arange(6, dtype=np.float32).reshape(2, 3)
    write_pfm(tmp_path / "d.pfm", disparity)
    np.testing.assert_array_equal(read_pfm(tmp_path / "d.pfm"), disparity)
    raw = (tmp_path / "d.pfm").read_bytes()
    first_row_on_disk = np.frombuffer(raw[-12:], "<f4")
    np.testing.assert_array_equal(first_row_on_disk, disparity[0])  # the top row is stored last
    big_endian = b"Pf\n3 2\n1.0\n" + disparity[::-1].astype(">f4").tobytes()
    (tmp_path / "e.pfm").write_bytes(big_endian)
    np.testing.assert_array_equal(read_pfm(tmp_path / "e.pfm"), disparity)
    color = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    write_pfm(tmp_path / "c.pfm", color)
    np.testing.assert_array_equal(read_pfm(tmp_path / "c.pfm"), color)


def test_truncated_pfm(tmp_path):
    (tmp_path / "t.pfm").write_bytes(b"Pf\n3 2\n-1.0\n" + b"\0" * 8)
    with pytest.raises(InputError, match="truncated"):
        read_pfm(tmp_path / "t.pfm")
