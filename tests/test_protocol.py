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
