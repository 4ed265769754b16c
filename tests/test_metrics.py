import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from lfrefsr import metrics


def test_psnr_of_a_constant_offset():
    hr = torch.full((3, 8, 8), 0.5, dtype=torch.float64)
    assert metrics.psnr(hr + 0.1, hr) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(hr, hr) == float("inf")


def test_y_channel_is_bt601():
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    assert float(metrics.rgb_to_y(white)) == pytest.approx(235 / 255)
    assert float(metrics.rgb_to_y(black)) == pytest.approx(16 / 255)


def test_ssim_matches_scikit_image():
    rng = np.random.default_rng(0)
    hr = rng.random((40, 50))
    sr = np.clip(hr + 0.1 * rng.standard_normal(hr.shape), 0, 1)
    expected = structural_similarity(hr, sr, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert metrics.ssim(sr, hr) == pytest.approx(expected, abs=2e-3)
    assert metrics.ssim(hr, hr) == pytest.approx(1.0)
