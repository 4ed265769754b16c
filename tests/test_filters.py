"""The separable Gaussian against a direct 2-D convolution."""

import pytest
import torch
import torch.nn.functional as F

from lfrefsr.filters import gaussian_kernel, separable_blur
from lfrefsr.models.ccnet import LocalContrastNorm


@pytest.mark.parametrize("sigma, shape", [(0.5, (2, 3, 11, 17)), (2.0, (2, 3, 11, 17)), (3.0, (1, 2, 40, 33)),
                                          (8.0, (1, 3, 70, 45))])
def test_separable_blur_equals_the_2d_gaussian_convolution(sigma, shape):
    # sizes that are not whole blocks of the banded products (16 or 32), in both directions, several blocks each
    torch.manual_seed(0)
    kernel = gaussian_kernel(sigma)
    r = (kernel.numel() - 1) // 2
    image = torch.rand(shape)
    padded = F.pad(image, (r, r, r, r), mode="replicate")
    expected = F.conv2d(padded, torch.outer(kernel, kernel).expand(shape[1], 1, -1, -1), groups=shape[1])
    torch.testing.assert_close(separable_blur(image, kernel), expected, rtol=1e-5, atol=1e-6)
    if sigma == 2.0:  # bf16 input: float32 output, computed in float32
        out = separable_blur(image.bfloat16(), kernel)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-2)


def test_local_contrast_norm_output():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 30, 20)
    out = LocalContrastNorm(sigma=2.0)(image)
    assert out.shape == image.shape and out.is_contiguous(memory_format=torch.channels_last)
    assert abs(float(out.mean())) < 0.2 and torch.isfinite(out).all()
