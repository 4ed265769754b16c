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


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel, padding, with_bias", [(9, 4, True), (5, 0, False), ((3, 7), (1, 3), True)])
def test_conv2d_few_outputs_equals_the_convolution(monkeypatch, channels_last, kernel, padding, with_bias):
    # kernel rows summed at their offsets: a row or padding off by one fails; a non-square kernel catches a swap
    torch.manual_seed(0)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(2, 6, 17, 13).contiguous(memory_format=layout)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    weight, bias = torch.randn(3, 6, kh, kw), torch.randn(3) if with_bias else None
    with torch.inference_mode():
        rows = ops.conv2d_few_outputs(x, weight, bias, padding=padding)
        direct = _eager(monkeypatch, lambda: ops.conv2d_few_outputs(x, weight, bias, padding=padding))
    torch.testing.assert_close(direct, torch.nn.functional.conv2d(x, weight, bias, padding=padding))
    assert rows.shape == direct.shape  # outputs of ~20 from 486 products: float32 rounding of order 1e-5
    torch.testing.assert_close(rows, direct, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [(8, 6), (9, 7)])
def test_max_pool_x2_equals_the_pooling(dtype, size):
    # odd sizes drop the last row and column as the pooling does
    torch.manual_seed(0)
    x = torch.randn(2, 5, *size).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        pooled = ops.max_pool_x2(x)
    assert torch.equal(pooled, torch.nn.functional.max_pool2d(x, 2))


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
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ccnet_fused_inference_equals_eager(monkeypatch):
    torch.manual_seed(0)
    net = CCNet(width=0.25, out_channels=16, batch_norm=False, input_norm="local").eval()
    image = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        for fn in (lambda: net(image, "ref"), lambda: net.features_on_grid(image, 8)):
            torch.testing.assert_close(fn(), _eager(monkeypatch, fn), rtol=1e-5, atol=1e-5)


def _randomise_batch_norm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_folding_batch_norm_keeps_the_outputs(monkeypatch):
    from lfrefsr.models.srresnet import SRResNetNN

    torch.manual_seed(0)
    last = torch.channels_last  # as load_network returns them: the fused skips need channels-last inputs
    sisr = _randomise_batch_norm(SRResNetNN(scale=4, num_blocks=2, features=8)).to(memory_format=last)
    ccnet = _randomise_batch_norm(CCNet(width=0.25, out_channels=16, batch_norm=True)).to(memory_format=last)
    lr, image = torch.rand(1, 3, 12, 10), torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        before = [sisr.features(lr), sisr(lr), ccnet(image, "ref"), ccnet.features_on_grid(image, 8)]
        sisr.fold_batch_norm(), ccnet.fold_batch_norm()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in [*sisr.modules(), *ccnet.modules()])
        after = [sisr.features(lr), sisr(lr), ccnet(image, "ref"), ccnet.features_on_grid(image, 8)]
        eager = _eager(monkeypatch, lambda: [sisr.features(lr), sisr(lr)])  # the skips as separate adds
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(after[:2], eager, strict=True):  # eager runs the SISR outputs only
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shipped_networks_load_folded():
    from lfrefsr.weights import load_network

    sisr, _ = load_network("sisr")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in sisr.modules())


def test_the_benchmark_counts_fused_convolutions(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    from lfrefsr.bench import count_fused_convolutions

    count_fused_convolutions()
    torch.manual_seed(0)
    net = SSNet(scale=4, lr_channels=8).eval().to(memory_format=torch.channels_last)
    lr_features, ref = torch.randn(1, 8, 6, 6), torch.rand(1, 3, 24, 24)

    def flops():
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(lr_features, ref)
        return counter.get_total_flops()

    fused, eager = flops(), _eager(monkeypatch, flops)
    assert eager > 0 and fused == eager
