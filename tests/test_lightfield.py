"""The light field's shared disparity: estimated from all LR views, turned into each view's flow, used by refsr."""

import numpy as np
import pytest
import torch

from lfrefsr import metrics, protocol
from lfrefsr.data.synthetic import make_lightfield
from lfrefsr.lightfield import estimate_disparity, view_disparity, view_flow
from lfrefsr.methods import ViewHint, get_method
from lfrefsr.methods.flowwarp import select_flow


@pytest.fixture(scope="module")
def light_field():
    data = make_lightfield(grid=5, size=(192, 192), seed=21, max_disparity=1.5)
    hr = protocol.to_float(data["hr"])  # (U, V, 3, H, W)
    views = [((u, v), protocol.stored_lr(hr[u, v], 8)) for u in range(5) for v in range(5) if (u, v) != (0, 0)]
    return {"hr": hr, "views": views, "scene": data["scene"], "flow": torch.as_tensor(data["flow"]),
            "occlusion": torch.as_tensor(data["occlusion"])}


def test_disparity_of_the_reference_is_recovered_from_lr_views(light_field):
    disparity = estimate_disparity(light_field["hr"][0, 0], light_field["views"], 8)
    truth = light_field["scene"].disparity((0, 0, 0))
    error = (disparity - truth).abs()
    assert disparity.shape == truth.shape
    assert error.median() < 0.15  # px per grid step; x8 LR views, so 1.2 LR px over the 4-step baseline
    assert (error[24:-24, 24:-24] < 0.5).float().mean() > 0.75  # borders: views shifted out of the image vote less
    flipped = estimate_disparity(light_field["hr"][0, 0], [((-du, -dv), lr) for (du, dv), lr in light_field["views"]],
                                 8)
    assert ((flipped - truth).abs() < 0.5).float().mean() < 0.5  # the offsets' sign matters


def test_view_disparity_is_the_fixed_point():
    constant = torch.full((20, 30), 1.25)
    assert torch.equal(view_disparity(constant, (3, -2)), constant)
    step = torch.zeros(20, 30)
    step[:, 15:] = 2.0  # a front half (d = 2) that moves left by 2 px per column step of the grid
    moved = view_disparity(step, (0, 1))
    # target pixel x shows the reference's point at x + d: the front half now starts 2 px earlier
    assert torch.equal(moved[:, 13:], torch.full((20, 17), 2.0)) and torch.equal(moved[:, :13], torch.zeros(20, 13))


def test_view_flow_matches_the_scene_flow(light_field):
    truth_disparity = light_field["scene"].disparity((0, 0, 0))
    for u, v in [(1, 2), (4, 4)]:
        flow = view_flow(truth_disparity, (u, v))  # (2, H, W)
        visible = ~light_field["occlusion"][u, v]
        error = (flow - light_field["flow"][u, v]).norm(dim=0)[visible]
        assert (error < 0.05).float().mean() > 0.95


def test_select_flow_keeps_the_flow_that_explains_the_lr_view(light_field):
    hr, truth = light_field["hr"], light_field["flow"][3, 3][None]  # (1, 2, H, W)
    lr = protocol.stored_lr(hr[3, 3], 8)[None]
    wrong = truth + torch.tensor([4.0, -3.0])[None, :, None, None]
    half = torch.cat([truth[..., :96], wrong[..., 96:]], -1)  # right in the left half only
    for first, second in [(truth, wrong), (wrong, truth)]:
        chosen = select_flow(hr[0, 0][None], lr, 8, [first, second])
        assert ((chosen - truth).norm(dim=1) < 0.5).float().mean() > 0.8
    mixed = select_flow(hr[0, 0][None], lr, 8, [half, wrong])
    assert ((mixed - truth).norm(dim=1)[..., 8:80] < 0.5).float().mean() > 0.8  # left half, away from the seam


def test_refsr_with_the_light_field_beats_refsr_per_view(light_field):
    hr = light_field["hr"]
    method = get_method("refsr", scale=8)
    views = [(ViewHint(grid_offset=offset), lr) for offset, lr in light_field["views"]]
    alone, shared = method.prepare(hr[0, 0]), method.prepare(hr[0, 0], views=views)
    assert shared.disparity is not None and alone.disparity is None
    gains = []
    for u, v in [(2, 4), (4, 4)]:
        lr, hint = protocol.stored_lr(hr[u, v], 8), ViewHint(grid_offset=(u, v))
        gains.append(metrics.psnr(method.super_resolve(lr, shared, hint), hr[u, v])
                     - metrics.psnr(method.super_resolve(lr, alone, hint), hr[u, v]))
    assert np.mean(gains) > 0.5, gains
    off = get_method("refsr", scale=8, lightfield=False)
    assert not off.uses_views and off.prepare(hr[0, 0], views=views).disparity is None
