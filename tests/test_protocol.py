"""The x8 protocol against an independent implementation (PIL's antialiased bicubic, MATLAB imresize's kernel)."""

import numpy as np
import pytest
import torch
from PIL import Image

from lfrefsr import metrics, protocol


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    smooth = rng.random((3, height // 4 + 1, width // 4 + 1)).astype(np.float32)
    image = torch.nn.functional.interpolate(torch.from_numpy(smooth)[None], size=(height, width), mode="bilinear")[0]
    return (image + 0.1 * torch.from_numpy(rng.random((3, height, width)).astype(np.float32))).clamp(0, 1)


def _pil_downsample(image: torch.Tensor, scale: int) -> np.ndarray:
    channels = []
    for channel in image.numpy():
        pil = Image.fromarray(channel.astype(np.float32), mode="F")
        small = pil.resize((channel.shape[1] // scale, channel.shape[0] // scale), Image.Resampling.BICUBIC)
        channels.append(np.asarray(small))
    return np.stack(channels)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("size", [(64, 64), (67, 93)])
def test_downsample_matches_pil_and_crops_to_a_multiple(scale, size):
    hr = _image(*size)
    lr = protocol.downsample(hr, scale)
    assert lr.shape == (3, size[0] // scale, size[1] // scale)
    expected = _pil_downsample(protocol.crop_to_multiple(hr, scale), scale)
    assert np.abs(lr.numpy() - expected).max() < 2e-3


def test_bicubic_psnr_equals_an_independent_computation():
    hr = _image(96, 128, seed=3)
    lr = protocol.to_float(protocol.make_lr(protocol.quantize(hr), 8))
    sr = protocol.upsample(lr, 8)
    hr_q = protocol.to_float(protocol.quantize(hr))
    mse = np.mean((sr.double().numpy() - hr_q.double().numpy()) ** 2)
    assert metrics.psnr(sr, hr_q) == pytest.approx(10 * np.log10(1 / mse), abs=1e-9)
    assert 15 < metrics.psnr(sr, hr_q) < 40


def test_make_lr_keeps_dtype_for_16_bit():
    hr = protocol.quantize(_image(32, 32), np.uint16)
    lr = protocol.make_lr(hr, 4)
    assert lr.dtype == np.uint16 and lr.shape == (3, 8, 8)
    assert abs(lr.astype(float).mean() - hr.astype(float).mean()) < 0.01 * 65535


def test_scale_checks():
    from lfrefsr.errors import InputError

    with pytest.raises(InputError, match=">= 2"):
        protocol.check_scale(1, (64, 64))
    with pytest.raises(InputError, match="larger than the image"):
        protocol.check_scale(128, (64, 64))
    protocol.check_scale(64, (64, 64))


# ---------------------------------------------------------------------------------------------------------------
# Degraded LR views (eval --degrade)
# ---------------------------------------------------------------------------------------------------------------


def _views(n=4, height=64, width=72):
    return [protocol.quantize(_image(height, width, seed)) for seed in range(n)]  # each (3, H, W) uint8


@pytest.mark.parametrize("spec,expected", [
    ("noise=3,jpeg=85", {"noise": 3.0, "jpeg": 85}),
    ("psf=gauss:0.6", {"psf": 0.6}),
    ("h264=28", {"h264": 28}),
    ("gain=1.1,0.95,1.0, noise=2", {"gain": (1.1, 0.95, 1.0), "noise": 2.0}),
])
def test_degradation_specs_parse(spec, expected):
    degradation = protocol.Degradation.parse(spec, seed=5)
    assert {key: getattr(degradation, key) for key in expected} == expected and degradation.seed == 5
    assert set(degradation.as_json()) == {*expected, "seed"}


@pytest.mark.parametrize("spec,word", [("noise=-1", "noise"), ("jpeg=0", "jpeg"), ("jpeg=85.5", "jpeg"),
                                       ("h264=52", "h264"), ("psf=box:1", "psf"), ("psf=gauss:0", "psf"),
                                       ("gain=1,2", "gain"), ("blur=2", "KEY"), ("noise", "KEY"),
                                       ("noise=1,noise=2", "twice"), ("jpeg=90,h264=20", "one")])
def test_bad_degradation_specs_are_one_line(spec, word):
    with pytest.raises(ValueError, match=word) as info:
        protocol.Degradation.parse(spec)
    assert "\n" not in str(info.value)


def test_no_degradation_is_the_protocol():
    hrs = _views()
    for hr, lr in zip(hrs, protocol.Degradation().lr_views(hrs, 8), strict=True):
        np.testing.assert_array_equal(lr, protocol.make_lr(hr, 8))


def test_each_degradation_changes_the_views_as_it_should():
    hrs = _views()
    clean = [protocol.to_float(protocol.make_lr(hr, 4)) for hr in hrs]

    def lr(spec, seed=0):
        return [protocol.to_float(v) for v in protocol.Degradation.parse(spec, seed).lr_views(hrs, 4)]

    def rms(a, b):
        return float(torch.stack([(x - y).pow(2).mean() for x, y in zip(a, b, strict=True)]).mean().sqrt())

    noisy = lr("noise=4")
    assert 3.0 / 255 < rms(noisy, clean) < 5.0 / 255  # sigma 4/255, quantised
    assert rms(lr("noise=4"), noisy) == 0 and rms(lr("noise=4", seed=1), noisy) > 0  # seeded
    assert rms(noisy[:1], noisy[1:2]) > 0  # each view its own noise
    blurred = lr("psf=gauss:1")  # sigma 4 HR px at x4: the LR view loses contrast
    assert sum(float(b.std()) for b in blurred) < sum(float(c.std()) for c in clean)
    gained = lr("gain=1.2,1,0.5")
    means = torch.stack([g.mean((1, 2)) / c.mean((1, 2)) for g, c in zip(gained, clean, strict=True)]).mean(0)
    assert means[0] > 1.1 and abs(float(means[1]) - 1) < 0.01 and abs(float(means[2]) - 0.5) < 0.02
    for strong, weak in (("jpeg=30", "jpeg=95"), ("h264=35", "h264=0")):  # 4:2:0 chroma: never lossless here
        coded = lr(strong)
        assert [c.shape for c in coded] == [c.shape for c in clean]
        assert rms(coded, clean) > rms(lr(weak), clean) > 0


def test_h264_handles_odd_sizes_and_16_bit():
    hrs = [protocol.quantize(_image(72, 88, seed), np.uint16) for seed in range(3)]  # LR 9 x 11 at x8: odd
    lrs = protocol.Degradation.parse("h264=20").lr_views(hrs, 8)
    assert all(lr.shape == (3, 9, 11) and lr.dtype == np.uint16 for lr in lrs)


@pytest.mark.parametrize("size", [(64, 80), (63, 81)])
def test_jpegs_colour_subsampling_is_modelled_and_its_gradient_flows(size):
    """``subsample_chroma`` is what JPEG does to colour (at quality 100 little else is lost), and
    ``jpeg_with_gradient`` has JPEG's values with its gradient."""
    image = (_image(*size, seed=1) * 255).round() / 255
    coded = protocol.through_jpeg(image[None], 100)
    rms = [float((x - coded).pow(2).mean().sqrt()) * 255 for x in (image[None], protocol.subsample_chroma(image[None]))]
    assert rms[1] < 0.2 * rms[0]  # 64 x 80: 10.92 -> 0.76 (of 255); 63 x 81: 10.40 -> 0.77
    variable = image[None].clone().requires_grad_(True)
    through = protocol.jpeg_with_gradient(variable, 85)
    assert torch.allclose(through, protocol.through_jpeg(image[None], 85), atol=1e-6)
    through.sum().backward()
    # the luma passes through: the sum's gradient is one per pixel and channel, the colour's averages sum to one too
    assert torch.allclose(variable.grad, torch.ones_like(variable.grad), atol=1e-4)
