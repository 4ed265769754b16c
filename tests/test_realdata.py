"""Checks on the real development data in ../shared/data; skipped when it is absent."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real development data not found at {DATA}")


def test_backgammon_layout_and_protocol(tmp_path):
    from lfrefsr.evaluate import evaluate_lf

    result = evaluate_lf(DATA / "lightfields" / "hci-backgammon", ["bicubic"], grid=(2, 2), progress=False)
    assert result["grid"] == [2, 2] and result["shape_hr"] == [512, 512]
    assert len(result["methods"]["bicubic"]["per_view"]) == 3
    assert 22 < result["methods"]["bicubic"]["psnr_rgb"] < 28


def test_sintel_flow_convention():
    """Warping frame 3 by the frame-2 flow reproduces frame 2 where not occluded (as the data README says)."""
    import torch

    from lfrefsr.io.flow import read_flo
    from lfrefsr.io.images import read_image
    from lfrefsr.protocol import to_float
    from lfrefsr.warp import warp

    clean = DATA / "video" / "sintel-alley_1" / "clean"
    frame2, frame3 = (to_float(read_image(clean / f"frame_000{i}.png"))[None] for i in (2, 3))
    flow = torch.from_numpy(read_flo(clean / "gt" / "frame_0002.flo"))[None]
    occluded = to_float(read_image(clean / "gt" / "occlusions" / "frame_0002.png"))[0] > 0.5
    error = (warp(frame3, flow) - frame2).abs().mean(dim=1)[0]
    assert float(error[~occluded].mean()) < 0.02
    assert float(error[~occluded].mean()) < 0.5 * float((frame3 - frame2).abs().mean())
