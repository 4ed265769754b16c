"""Synthetic layered scenes: determinism, shapes, and exactness of the ground-truth flow and occlusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfrefsr.data import LayeredScene, load_photos, make_lfvideo, make_lightfield, make_video
from lfrefsr.warp import warp

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
MEAN_ERROR_BOUND = 0.03  # mean abs error of a correct flow on fractional geometry (bilinear resampling only)


def _warp_error(ref: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor):
    """Per-pixel abs error (over non-occluded pixels) of the reference (3, H, W) warped by flow (2, H, W)."""
    warped = warp(ref[None], torch.as_tensor(flow)[None])[0]  # (3, H, W)
    return (warped - target).abs().amax(0)[~torch.as_tensor(occlusion)]  # (N_visible,)


def test_deterministic_with_seed():
    first, second = make_lightfield(3, (24, 32), seed=5), make_lightfield(3, (24, 32), seed=5)
    for key in ("hr", "flow", "occlusion"):
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["hr"], make_lightfield(3, (24, 32), seed=6)["hr"])


def test_shapes_and_dtypes():
    lf = make_lightfield((2, 3), (24, 32), seed=0)
    assert lf["hr"].shape == (2, 3, 3, 24, 32) and lf["hr"].dtype == np.uint8
    assert lf["flow"].shape == (2, 3, 2, 24, 32) and lf["flow"].dtype == np.float32
    assert lf["occlusion"].shape == (2, 3, 24, 32) and lf["occlusion"].dtype == bool
    video = make_video(3, (24, 32), seed=0)
    assert video["hr"].shape == (3, 3, 24, 32) and video["flow_prev"].shape == (3, 2, 24, 32)
    assert video["occlusion_prev"].shape == (3, 24, 32)
    assert not video["flow_prev"][0].any() and not video["occlusion_prev"][0].any()
    lfv = make_lfvideo(2, (2, 2), (16, 20), seed=0)
    assert lfv["hr"].shape == (2, 2, 2, 3, 16, 20) and lfv["flow"].shape == (2, 2, 2, 2, 16, 20)
    assert lfv["occlusion"].shape == (2, 2, 2, 16, 20)
    scene = lf["scene"]
    hr = scene.render(0, 1, 1)
    assert hr.shape == (3, 24, 32) and hr.dtype == torch.float32 and 0 <= hr.min() and hr.max() <= 1
    disparity = scene.disparity((0, 1, 1))
    assert disparity.shape == (24, 32) and set(disparity.unique().tolist()) <= set(scene.disparities.float().tolist())


def test_integer_disparity_warp_is_exact_lightfield():
    lf = make_lightfield(4, (32, 40), seed=1, integer_disparity=True)
    scene = lf["scene"]
    ref = scene.render(0, 0, 0)
    for u, v in [(0, 1), (1, 0), (2, 3), (3, 3)]:
        error = _warp_error(ref, scene.render(0, u, v), lf["flow"][u, v], lf["occlusion"][u, v])
        assert error.numel() > 100 and error.max() < 1e-5


def test_integer_disparity_warp_is_exact_lfvideo():
    lfv = make_lfvideo(2, 3, (24, 32), ref=(1, 1), seed=2, integer_disparity=True, motion=0.0)
    scene = lfv["scene"]
    for t in range(2):
        ref = scene.render(t, 1, 1)
        for u, v in [(0, 0), (2, 1), (2, 2)]:
            error = _warp_error(ref, scene.render(t, u, v), lfv["flow"][t, u, v], lfv["occlusion"][t, u, v])
            assert error.numel() > 100 and error.max() < 1e-5


def test_fractional_disparity_flow_is_accurate_and_sign_matters():
    lf = make_lightfield(4, (48, 64), seed=0)
    scene = lf["scene"]
    assert (scene.disparities != scene.disparities.round()).any()
    ref, target = scene.render(0, 0, 0), scene.render(0, 3, 3)
    flow, occlusion = lf["flow"][3, 3], lf["occlusion"][3, 3]
    assert _warp_error(ref, target, flow, occlusion).mean() < MEAN_ERROR_BOUND
    assert _warp_error(ref, target, -flow, occlusion).mean() > 2 * MEAN_ERROR_BOUND


def test_affine_video_flow_is_accurate_and_sign_matters():
    video = make_video(3, (48, 64), seed=0)
    scene = video["scene"]
    assert (scene.spin != 0).all() and (scene.zoom != 0).all()
    for t in (1, 2):
        ref, target = scene.render(t - 1, 0, 0), scene.render(t, 0, 0)
        flow, occlusion = video["flow_prev"][t], video["occlusion_prev"][t]
        assert np.abs(flow).max() > 1.0
        assert _warp_error(ref, target, flow, occlusion).mean() < MEAN_ERROR_BOUND
        assert _warp_error(ref, target, -flow, occlusion).mean() > 2 * MEAN_ERROR_BOUND


def test_occlusion_and_self_flow():
    lf = make_lightfield(3, (32, 40), seed=0)
    assert lf["occlusion"][2, 2].any()
    assert not lf["occlusion"][0, 0].any() and np.abs(lf["flow"][0, 0]).max() < 1e-5
    scene = make_video(3, (32, 40), seed=0)["scene"]
    assert not scene.occlusion((2, 0, 0), (2, 0, 0)).any()
    assert scene.flow((2, 0, 0), (2, 0, 0)).abs().max() < 1e-5


def test_brightness_changes_colours_not_geometry():
    plain = LayeredScene(24, 32, seed=7)
    lit = LayeredScene(24, 32, seed=7, brightness=0.1)
    assert (lit.render(0, 1, 0) - plain.render(0, 1, 0)).abs().max() > 1e-3
    assert torch.equal(lit.render(0, 1, 0), lit.render(0, 1, 0))
    assert torch.equal(lit.flow((0, 1, 0), (0, 0, 0)), plain.flow((0, 1, 0), (0, 0, 0)))


def _check_photos(photos):
    assert photos
    for photo in photos:
        assert photo.dtype == torch.float32 and photo.ndim == 3 and photo.shape[0] == 3
        assert 0.0 <= photo.min() and photo.max() <= 1.0


def test_skimage_photos():
    photos = load_photos(max_images=3)
    assert len(photos) == 3
    _check_photos(photos)
    assert all(min(photo.shape[-2:]) >= 128 for photo in photos)


def test_folder_photos(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((20, 30), 255, np.uint8), mode="L").save(tmp_path / "sub" / "b.png")
    rgba = np.zeros((16, 18, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 128, 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    photos = load_photos(tmp_path, min_size=8)
    _check_photos(photos)
    assert [tuple(photo.shape) for photo in photos] == [(3, 16, 18), (3, 20, 30)]  # sorted by name: a, sub/b
    assert torch.allclose(photos[0][:, 0, 0], torch.tensor([128 / 255, 0.0, 0.0]))
    assert torch.equal(photos[1], torch.ones(3, 20, 30))
    assert len(load_photos(tmp_path, min_size=18)) == 1
    scene = LayeredScene(12, 16, photos=photos, seed=0)
    assert scene.render().shape == (3, 12, 16)


@pytest.mark.realdata
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data folder {SHARED_DATA} is absent")
def test_shared_texture_folder():
    photos = load_photos(SHARED_DATA / "textures", max_images=2)
    assert len(photos) == 2
    _check_photos(photos)


def test_training_pairs_flow_lies_on_the_epipolar_direction_after_rotation():
    from lfrefsr.training.pairs import PairConfig, load_training_photos, sample_pair

    photos = load_training_photos(["skimage"])[:4]
    rng = np.random.default_rng(11)
    cfg = PairConfig(size=64, lf_fraction=1.0, grid=4, max_disparity=2.0, brightness=0.0)
    for _ in range(4):
        pair = sample_pair(rng, photos, cfg)
        dx, dy = pair.direction
        cross = pair.flow[0] * dy - pair.flow[1] * dx  # zero when the flow is parallel to the direction
        assert float(cross.abs().max()) < 1e-3


def test_slanted_layers_flow_is_accurate_and_disparity_varies():
    lf = make_lightfield(4, (48, 64), seed=3, slant=2.0)
    scene = lf["scene"]
    assert (scene.slope != 0).all()
    disparity = scene.disparity((0, 0, 0))
    assert len(disparity.unique()) > 100  # a slanted plane has a disparity per pixel, not one per layer
    flat = LayeredScene(48, 64, seed=3, origin=(0, 0))
    assert torch.equal(flat.render(0, 0, 0), scene.render(0, 0, 0))  # the origin view does not see the slant
    assert not torch.equal(flat.render(0, 3, 3), scene.render(0, 3, 3))
    ref, target = scene.render(0, 0, 0), scene.render(0, 3, 3)
    flow, occlusion = lf["flow"][3, 3], lf["occlusion"][3, 3]
    assert _warp_error(ref, target, flow, occlusion).mean() < MEAN_ERROR_BOUND
    # the flow of a light field is the disparity times the grid offset, here (-3, -3) steps from the origin
    visible = ~torch.as_tensor(occlusion)
    expected = 3 * scene.disparity((0, 3, 3))
    assert torch.allclose(torch.as_tensor(flow)[0][visible], expected[visible], atol=1e-4)


def test_repeat_tiles_textures_and_zero_keeps_old_scenes():
    tiled = LayeredScene(48, 64, seed=4, repeat=1.0)
    plain = LayeredScene(48, 64, seed=4)
    assert torch.equal(LayeredScene(48, 64, seed=4, slant=0.0, repeat=0.0).render(0, 1, 1), plain.render(0, 1, 1))
    texture = tiled.textures[0]  # (3, H, W), periodic with the tile's period in both axes
    period_x = next(p for p in range(12, 49) if torch.equal(texture[:, :, p:], texture[:, :, :-p]))
    period_y = next(p for p in range(12, 49) if torch.equal(texture[:, p:], texture[:, :-p]))
    assert 12 <= period_x <= 48 and 12 <= period_y <= 48
    assert not torch.equal(tiled.render(), plain.render())


def test_thin_layers_are_thin_and_their_flow_is_accurate():
    lf = make_lightfield(4, (64, 64), seed=2, thin=1.0, n_layers=3)
    scene = lf["scene"]
    assert (scene.semi_axes[1:, 1] <= 5.0).all() and scene.wedge.any()
    top = scene._top((0, 0, 0), scene._grid)[0]  # (H, W) top layer index
    for layer in range(1, 4):  # a thin layer covers far less than its bounding box
        covered = int((top == layer).sum())
        assert covered <= 4 * float(scene.semi_axes[layer].prod())
    ref, target = scene.render(0, 0, 0), scene.render(0, 3, 3)
    assert _warp_error(ref, target, lf["flow"][3, 3], lf["occlusion"][3, 3]).mean() < MEAN_ERROR_BOUND
    assert torch.equal(LayeredScene(64, 64, seed=2, n_layers=3).render(), LayeredScene(64, 64, seed=2, n_layers=3,
                                                                                          thin=0.0).render())


def test_comb_layers_repeat_their_teeth_and_keep_exact_flow():
    lf = make_lightfield(4, (96, 96), seed=5, thin=1.0, comb=1.0, n_layers=2)
    scene = lf["scene"]
    assert (scene.comb_period[1:] > 0).all()
    plain = LayeredScene(96, 96, seed=5, thin=1.0, n_layers=2)
    covered = lambda s: [int((s._top((0, 0, 0), s._grid)[0] == k).sum()) for k in (1, 2)]  # noqa: E731
    assert sum(covered(scene)) > sum(covered(plain))  # many teeth cover more than one
    ref, target = scene.render(0, 0, 0), scene.render(0, 3, 3)
    assert _warp_error(ref, target, lf["flow"][3, 3], lf["occlusion"][3, 3]).mean() < MEAN_ERROR_BOUND
    assert torch.equal(plain.render(), LayeredScene(96, 96, seed=5, thin=1.0, n_layers=2, comb=0.0).render())


def test_dead_leaves_cover_the_canvas_with_the_photographs_colours_and_textures():
    """Dead leaves (``lfrefsr.data.deadleaves``): seeded, in [0, 1]; textured leaves show a photograph's crop at its
    own scale and gratings alternate two of its colours. Two photos, one pure red and one pure blue: with every leaf
    textured, or every leaf a grating, every pixel is a red-blue mix (edges average the two), never green."""
    from lfrefsr.data.deadleaves import _power_law, dead_leaves, square_wave

    red, blue = torch.zeros(3, 64, 64), torch.zeros(3, 64, 64)
    red[0], blue[2] = 1.0, 1.0
    image = dead_leaves(48, np.random.default_rng(0), [red, blue])
    assert image.shape == (3, 48, 48) and 0 <= float(image.min()) and float(image.max()) <= 1
    torch.testing.assert_close(image, dead_leaves(48, np.random.default_rng(0), [red, blue]))
    assert not torch.equal(image, dead_leaves(48, np.random.default_rng(1), [red, blue]))

    textured = dead_leaves(48, np.random.default_rng(2), [red, blue], textured=1.0)
    assert float(textured[1].abs().max()) == 0  # no green anywhere: only the photographs' pixels
    torch.testing.assert_close(textured[0] + textured[2], torch.ones(48, 48))
    assert float((textured[0] > 0.99).float().mean()) > 0.05 and float((textured[2] > 0.99).float().mean()) > 0.05

    # gratings: two of the photographs' colours alternating across each leaf (no ramp), so red-blue mixes, and many
    # of them (sine waves, antialiased square waves), where flat leaves mix colours only at their edges
    striped = dead_leaves(48, np.random.default_rng(3), [red, blue], textured=0.0, striped=1.0)
    assert float(striped[1].abs().max()) == 0
    torch.testing.assert_close(striped[0] + striped[2], torch.ones(48, 48))
    assert float(((striped[0] > 0.05) & (striped[0] < 0.95)).float().mean()) > 0.2
    phase = np.linspace(-7 * np.pi, 7 * np.pi, 7001)
    for share in (0.15, 0.5, 0.85):  # the second colour over that share of each period
        assert abs(float((square_wave(phase, share) > 0).mean()) - share) < 0.01

    # the sizes follow the power law: median of p(r) ~ r^-2 on [4, 100] is 2 / (1/4 + 1/100) = 7.69
    rng = np.random.default_rng(0)
    radii = np.array([_power_law(rng, 4.0, 100.0, 2.0) for _ in range(4000)])
    assert radii.min() >= 4 and radii.max() <= 100 and abs(np.median(radii) - 7.69) < 0.3
