"""The LR camera's degradation estimated from the capture's HR/LR pairs: the protocol gives none, a known blur,
gain and noise are found again, and ingest records the estimate where the LR views come from a camera."""

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_protocol import _image

from lfrefsr import capture, protocol
from lfrefsr.io.images import write_image
from lfrefsr.io.store import Store


def _estimate(spec: str, scale: int = 8, seeds=(0, 1)) -> capture.CaptureEstimate:
    hrs = [protocol.quantize(_image(192, 256, seed)) for seed in seeds]
    lrs = protocol.Degradation.parse(spec).lr_views(hrs, scale) if spec else [protocol.make_lr(h, scale) for h in hrs]
    return capture.estimate([protocol.to_float(h) for h in hrs], [protocol.to_float(lr) for lr in lrs], scale)


def test_the_protocols_own_lr_views_show_no_blur_gain_or_noise():
    found = _estimate("")
    assert found.psf < 0.05 and np.allclose(found.gain, 1, atol=0.005) and found.noise < 1.0 and found.pairs == 2


@pytest.mark.parametrize("spec,psf,gain,noise", [
    ("psf=gauss:0.6", 0.6, (1, 1, 1), 0),
    ("psf=gauss:1.0,gain=1.1,0.95,1.0", 1.0, (1.1, 0.95, 1.0), 0),
    ("psf=gauss:0.3,noise=3", 0.3, (1, 1, 1), 3),
])
def test_a_known_degradation_is_found_again(spec, psf, gain, noise):
    found = _estimate(spec)
    assert found.psf == pytest.approx(psf, rel=0.1)
    assert np.allclose(found.gain, gain, atol=0.01)
    assert abs(found.noise - noise) < 0.6


@pytest.mark.parametrize("spec,quality", [
    ("jpeg=85", 85), ("noise=3,jpeg=85", 85), ("noise=2,jpeg=70", 70), ("psf=gauss:0.4,jpeg=95", 95),
    ("", None), ("noise=3", None), ("psf=gauss:0.6", None), ("h264=28", None),
])
def test_the_jpeg_quality_the_lr_views_were_written_at_is_found(spec, quality):
    """JPEG's error is fixed by the image and its block grid: predicted through the right quality, the LR views are
    explained far better than without; no quality explains views that never went through JPEG (an H.264 stream's
    blocks and motion are not JPEG's)."""
    found = _estimate(spec)
    assert found.jpeg == quality
    assert capture.CaptureEstimate.from_json(found.as_json()) == found
    assert ("JPEG quality" in found.line(8)) == (quality is not None)


@pytest.mark.parametrize("spec,psf", [
    ("jpeg=85", 0.0), ("noise=3,jpeg=85", 0.0), ("noise=2,jpeg=70", 0.0), ("psf=gauss:0.6,jpeg=85", 0.6),
    ("psf=gauss:0.4,jpeg=95", 0.4),
])
def test_jpeg_smoothing_is_not_read_as_lens_blur(spec, psf):
    """JPEG drops the small coefficients, which a fit without the codec reads as a lens blur (on these images 0.63 LR
    px for a lens with none, 1.04 for one of 0.6); fitted with the codec, the lens is found again."""
    found = _estimate(spec)
    assert found.jpeg is not None
    assert found.psf == pytest.approx(psf, abs=0.1 if psf == 0 else 0.1 * psf)


def test_lr_views_too_small_to_fit_are_refused():
    with pytest.raises(ValueError):
        capture.estimate([torch.rand(3, 32, 32)], [torch.rand(3, 4, 4)], 8)


def test_ingest_records_the_estimate_of_a_hybrid_light_field(lf_hr, tmp_path):
    """--lr-dir views blurred by a known lens: the store's attributes and `lfrefsr info` give its sigma."""
    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir(), lr_dir.mkdir()
    big = np.stack([np.stack([protocol.quantize(_image(96, 128, 3 * u + v)) for v in range(3)]) for u in range(3)])
    lrs = protocol.Degradation.parse("psf=gauss:0.8").lr_views([view for row in big for view in row], 2)
    for n, lr in enumerate(lrs):
        write_image(hr_dir / f"view_{n // 3:02d}_{n % 3:02d}.png", big[n // 3, n % 3])
        write_image(lr_dir / f"view_{n // 3:02d}_{n % 3:02d}.png", lr)
    store_path = tmp_path / "out" / "hybrid.zarr"
    result = run_cli(["ingest", "lf", hr_dir, store_path, "--scale", "2", "--lr-dir", lr_dir, "-q"])
    assert result.exit_code == 0, result.output
    found = Store.open(store_path).attrs["capture"]
    assert found["psf"] == pytest.approx(0.8, rel=0.1) and found["pairs"] == 1
    info = run_cli(["info", store_path])
    assert "LR camera (estimated): psf gauss:0.8" in info.stdout


def test_a_store_of_protocol_lr_views_has_no_estimate(lf_dir, tmp_path):
    store_path = tmp_path / "out" / "scene.zarr"
    assert run_cli(["ingest", "lf", lf_dir, store_path, "-q"]).exit_code == 0
    assert "capture" not in Store.open(store_path).attrs
    assert "LR camera" not in run_cli(["info", store_path]).stdout


def test_flowwarp_that_knows_the_lens_does_better_on_its_views():
    """A light-field view blurred by a lens of sigma 0.6 LR px: flowwarp told the PSF (blur before DIS, trust,
    back-projection through it) beats flowwarp assuming the protocol, and the protocol's own views are unchanged."""
    from lfrefsr import metrics
    from lfrefsr.data.synthetic import make_lightfield
    from lfrefsr.methods import ViewHint, get_method

    hr = make_lightfield(grid=2, size=(128, 160), seed=4, max_disparity=1.5)["hr"]  # (2, 2, 3, H, W) uint8
    ref, target = protocol.to_float(hr[0, 0]), hr[1, 1]
    lr = protocol.to_float(protocol.Degradation.parse("psf=gauss:0.6").lr_views([target], 4)[0])
    truth = protocol.to_float(target)
    hint = ViewHint(grid_offset=(1, 1))
    plain = get_method("flowwarp", scale=4)(lr, ref, hint)
    told = get_method("flowwarp", scale=4, psf=0.6)(lr, ref, hint)
    assert metrics.psnr(told, truth) > metrics.psnr(plain, truth) + 0.5
    clean = protocol.to_float(protocol.make_lr(target, 4))
    torch.testing.assert_close(get_method("flowwarp", scale=4, psf=0.0)(clean, ref, hint),
                               get_method("flowwarp", scale=4)(clean, ref, hint), rtol=0, atol=0)


def test_back_projection_does_not_push_the_lr_views_noise_into_the_result():
    from lfrefsr import metrics
    from lfrefsr.methods.flowwarp import back_project

    truth = protocol.to_float(protocol.quantize(_image(128, 128, 0)))[None]  # (1, 3, H, W)
    noisy = protocol.to_float(protocol.Degradation.parse("noise=6").lr_views([protocol.quantize(truth[0])], 4)[0])
    start = truth.clone()  # a perfect estimate: every correction can only add the noise
    plain = back_project(start, noisy[None], 4, 10)
    aware = back_project(start, noisy[None], 4, 10, noise=6.0)
    assert metrics.psnr(aware[0], truth[0]) > metrics.psnr(plain[0], truth[0]) + 3


def test_a_correct_warp_keeps_its_trust_on_a_noisy_lr_view():
    """The residual of a perfect warp against a noisy LR view is the noise: with the camera's noise level the trust
    judges it over 3 x 3 LR pixels and stays high; a clean camera's views are judged per pixel, as before."""
    from lfrefsr.capture import NOISY
    from lfrefsr.methods.flowwarp import lr_disagreement, noise_window

    truth = protocol.to_float(protocol.quantize(_image(128, 128, 2)))[None]  # (1, 3, H, W): the warp is exact
    noisy = protocol.to_float(protocol.Degradation.parse("noise=5").lr_views([protocol.quantize(truth[0])], 4)[0])
    per_pixel = lr_disagreement(truth, noisy[None], 4).mean()
    averaged = lr_disagreement(truth, noisy[None], 4, noise=5.0).mean()
    assert averaged < per_pixel / 2
    assert noise_window(NOISY) == 1 and noise_window(5.0) == 3
    clean = protocol.to_float(protocol.make_lr(protocol.quantize(truth[0]), 4))[None]
    torch.testing.assert_close(lr_disagreement(truth, clean, 4, noise=0.4), lr_disagreement(truth, clean, 4))


def test_ssnet_sees_the_lr_view_as_the_protocols_camera_would_have_given_it():
    """refsr's LR features come from protocol_view: the LR view itself for the protocol's camera, and the
    protocol's LR image of the view for a blurred camera whose view the estimate explains exactly."""
    from lfrefsr.methods.refsr import protocol_view

    truth = protocol.to_float(protocol.quantize(_image(128, 128, 3)))[None]  # (1, 3, H, W)
    clean = protocol.to_float(protocol.make_lr(protocol.quantize(truth[0]), 4))[None]
    torch.testing.assert_close(protocol_view(clean, truth * 0.9, 4), clean)  # any estimate: the view itself
    blurred = protocol.to_float(protocol.Degradation.parse("psf=gauss:0.8").lr_views([protocol.quantize(truth[0])],
                                                                                      4)[0])[None]
    seen = protocol_view(blurred, truth, 4, psf=0.8)
    assert (seen - clean).abs().max() <= 1.5 / 255  # the protocol's view, up to the two roundings
    assert (blurred - clean).abs().max() > 20 / 255


def test_inverse_flow_undoes_a_smooth_flow():
    from lfrefsr.methods.flowwarp import inverse_flow
    from lfrefsr.warp import warp

    y, x = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 128), indexing="ij")
    flow = torch.stack([3 * torch.sin(3 * x) + 2.0, 2 * torch.cos(2 * y) - 1.0])  # (2, H, W), gradient below 1
    inverse = inverse_flow(flow)
    round_trip = inverse + warp(flow[None], inverse[None])[0]  # zero where inverse(x) = -flow(x + inverse(x))
    assert round_trip[:, 8:-8, 8:-8].abs().max() < 1e-3


def test_dis_run_both_ways_is_nearer_the_motion_on_a_noisy_view():
    """A noisy camera's DIS flow is the forward flow averaged with the inverted backward one, whose patches are the
    clean reference's (``symmetric_dis_flow``): on moving synthetic scenes with noise=3,jpeg=85 its end-point error is
    the lower on average."""
    from lfrefsr.data.synthetic import make_video
    from lfrefsr.methods.flowwarp import FlowWarp, dis_flow, gray_u8, symmetric_dis_flow

    errors = []
    for seed in range(5):
        data = make_video(frames=2, size=(256, 256), seed=seed, motion=3.0)
        lr = protocol.to_float(protocol.Degradation.parse("noise=3,jpeg=85").lr_views([data["hr"][1]], 8)[0])
        flowwarp = FlowWarp(8, noise=5.0)
        context = flowwarp.prepare(protocol.to_float(data["hr"][0]))
        target = flowwarp._dis_image(gray_u8(protocol.upsample(lr[None], 8)[0]))
        truth, seen = torch.as_tensor(data["flow_prev"][1]), ~torch.as_tensor(data["occlusion_prev"][1])
        errors.append([float((flow - truth).norm(dim=0)[seen].mean()) for flow in (
            dis_flow(target, context.ref_gray, flowwarp.preset, flowwarp.patch),
            symmetric_dis_flow(target, context.ref_gray, flowwarp.preset, flowwarp.patch))])
    forward, both = np.mean(errors, axis=0)
    assert both < forward
