"""The fused convolution + add + activation against the eager ops, alone and inside the networks."""

import pytest
import torch

from lfrefsr.models import ops
from lfrefsr.models.ccnet import CCNet
from lfrefsr.models.ssnet import SSNet


def _eager(monkeypatch, fn):
    monkeypatch.setattr(ops, "FUSE", False)
    try:
        return fn()
    finally:
        monkeypatch.setattr(ops, "FUSE", True)


@pytest.mark.parametrize("act", ops.ACTIVATIONS)
@pytest.mark.parametrize("with_other", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv2d_act_equals_the_eager_ops(monkeypatch, act, with_other, channels_last):
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 5, 9, 11).contiguous(memory_format=layout)
    other = torch.randn(2, 4, 5, 6).contiguous(memory_format=layout) if with_other else None
    weight, bias = torch.randn(4, 5, 3, 3), torch.randn(4)
    geometry = dict(stride=2, padding=2, dilation=2, act=act, other=other)
    with torch.inference_mode():
        fused = ops.conv2d_act(x, weight, bias, **geometry)
        eager = _eager(monkeypatch, lambda: ops.conv2d_act(x, weight, bias, **geometry))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ops.conv2d_act(x, weight, bias, **geometry)
    assert fused.shape == (2, 4, 5, 6)
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), eager, rtol=0.05, atol=0.15)


def test_conv2d_act_keeps_gradients_when_training():
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    out = ops.conv2d_act(x, torch.randn(2, 3, 3, 3), None, padding=1, act="relu", other=torch.randn(1, 2, 6, 6))
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kwargs", [{}, {"fuse_activation": "sigmoid", "mask_activation": "paper"},
                                    {"hr_in_channels": 7, "features": 16}])
def test_ssnet_fused_inference_equals_eager(monkeypatch, kwargs):
    torch.manual_seed(0)
    net = SSNet(scale=4, lr_channels=8, **kwargs).eval().to(memory_format=torch.channels_last)
    lr_features = torch.randn(2, 8, 6, 6)
    ref = torch.rand(2, net.hr_in_channels, 24, 24)
    with torch.inference_mode():
        fused = net(lr_features, ref)
        eager = _eager(monkeypatch, lambda: net(lr_features, ref))
    for a, b in zip(fused, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ccnet_fused_inference_equals_eager(monkeypatch):
    torch.manual_seed(0)
    net = CCNet(width=0.25, out_channels=16, batch_norm=False, input_norm="local").eval()
    image = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        for fn in (lambda: net(image, "ref"), lambda: net.features_on_grid(image, 8)):
            torch.testing.assert_close(fn(), _eager(monkeypatch, fn), rtol=1e-5, atol=1e-5)
