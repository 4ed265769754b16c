"""The light field's shared disparity: estimated from all LR views, turned into each view's flow, used by refsr."""

import numpy as np
import pytest
import torch

from lfrefsr import metrics, protocol
from lfrefsr.data.synthetic import make_lightfield
from lfrefsr.lightfield import (
    DISPARITY_REFINE,
    estimate_disparity,
    prefiltered,
    sweep_settings,
    view_disparity,
    view_flow,
)
from lfrefsr.methods import ViewHint, get_method
from lfrefsr.methods.flowwarp import select_flow
from lfrefsr.warp import pixel_grid, sample, warp


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


def test_the_prefiltered_reference_is_the_protocols_lr_image_at_every_phase():
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0))
    phases = prefiltered(image, 8)
    assert torch.allclose(phases[:, ::8, ::8], protocol.downsample(image, 8), atol=1e-6)
    for shift in ((16.0, 8.0), (3.0, 5.0), (2.5, -1.25)):  # (x, y) HR px: the image translated, then decimated
        offset = torch.tensor(shift)[:, None, None]
        translated = sample(image[None], (pixel_grid(64, 80) + offset)[None])[0]
        predicted = sample(phases[None], (pixel_grid(8, 10) * 8 + offset)[None])[0]
        interior = (slice(None), slice(3, 5), slice(2, 6))  # the decimation's support stays inside the image
        assert torch.allclose(predicted[interior], protocol.downsample(translated, 8)[interior], atol=1e-5)


INSIDE = (slice(32, -32), slice(32, -32))  # away from the borders, where views leave the image


def _degraded_light_field(spec: str):
    """A synthetic 5x5 light field with its LR views degraded by ``spec``: the reference (3, H, W), the other views
    [((du, dv), (3, h, w))], the reference's true disparity (H, W), and the RGB PSNR of the reference warped by a
    disparity to the farthest view, what refsr's alignment starts from."""
    data = make_lightfield(grid=5, size=(256, 256), seed=3, max_disparity=1.5)
    positions = [(u, v) for u in range(5) for v in range(5)]
    lrs = protocol.Degradation.parse(spec).lr_views([data["hr"][u, v] for u, v in positions], 8)
    views = [(p, protocol.to_float(lr)) for p, lr in zip(positions, lrs, strict=True) if p != (0, 0)]
    ref = protocol.to_float(data["hr"][0, 0])
    far = (4, 4)
    hr_far = protocol.to_float(data["hr"][far])

    def warped_psnr(disparity: torch.Tensor) -> float:
        return metrics.psnr(warp(ref[None], view_flow(disparity, far)[None])[0], hr_far)

    return ref, views, data["scene"].disparity((0, 0, 0)), warped_psnr


@pytest.mark.parametrize("spec", ["jpeg=85", "noise=3,jpeg=85"])
def test_views_written_as_jpeg_give_a_better_disparity_through_the_codec(spec):
    """The sweep that predicts each view through the codec on its own grid recovers the disparity better than the
    plain one, which takes JPEG's error (fixed by the content and the block grid) for noise."""
    ref, views, truth, warped_psnr = _degraded_light_field(spec)
    plain = estimate_disparity(ref, views, 8, keep=1.0, window=9, luma=True)  # the plain sweep's noisy rule
    codec = estimate_disparity(ref, views, 8, jpeg=85)
    assert (codec - truth)[INSIDE].abs().median() < 0.6 * (plain - truth)[INSIDE].abs().median()
    assert warped_psnr(codec) > warped_psnr(plain) + 1.0


@pytest.mark.parametrize("spec", ["noise=3", "noise=3,jpeg=85"])
def test_the_refined_disparity_explains_noisy_views_better_than_the_sweep(spec):
    """Fitted to every view at once through the camera (and the codec), the swept disparity of noisy views comes
    nearer the scene's, and so does the reference warped by it."""
    ref, views, truth, warped_psnr = _degraded_light_field(spec)
    settings = sweep_settings(3.0, 1.0, 85 if "jpeg" in spec else None)
    assert settings["refine"] == DISPARITY_REFINE["steps"]
    refined = estimate_disparity(ref, views, 8, **settings)
    swept = estimate_disparity(ref, views, 8, **{**settings, "refine": 0})
    errors = [float((d - truth)[INSIDE].abs().mean()) for d in (swept, refined)]
    assert errors[1] < 0.9 * errors[0], errors  # 0.232 -> 0.176 px (noise), 0.285 -> 0.234 (noise and JPEG)
    warped = [warped_psnr(d) for d in (swept, refined)]
    assert warped[1] > warped[0] + 1.0, warped  # 24.42 -> 27.94 dB, 25.76 -> 27.49


def test_a_clean_camera_keeps_the_swept_disparity():
    assert "refine" not in sweep_settings(0.5) and "refine" not in sweep_settings(0.5, 3.0)


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
