"""The CPU kernels against the plain ops they replace: as functions, as modules, and inside prepared networks."""

import copy

import pytest
import torch
import torch.nn as nn

from lfrefsr.models import ops
from lfrefsr.models.ccnet import CCNet, CosineScale
from lfrefsr.models.inference import prepare_for_inference
from lfrefsr.models.ssnet import ConcatConv2d, SSNet


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


def test_conv2d_split_and_taps_equal_the_convolution_of_the_concatenation():
    torch.manual_seed(0)
    parts = [torch.randn(2, 7, 9, 11), torch.randn(2, 5, 9, 11), torch.randn(2, 1, 9, 11)]
    weight, bias = torch.randn(4, 13, 3, 3), torch.randn(4)
    expected = torch.nn.functional.conv2d(torch.cat(parts, 1), weight, bias, padding=1)
    with torch.inference_mode():
        split = ops.conv2d_split(parts, weight, bias, padding=1, act="relu")
        taps = ops.conv2d_taps([p.contiguous(memory_format=torch.channels_last) for p in parts], weight[:1], bias[:1],
                               padding=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = ops.conv2d_taps([part.bfloat16() for part in parts], weight[:1], bias[:1], padding=1)
    torch.testing.assert_close(split, expected.relu(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(taps, expected[:, :1], rtol=1e-5, atol=1e-5)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected[:, :1], rtol=0.05, atol=0.25)  # bf16 sums of ~100 terms


def _kernel_cases() -> list:
    """(kernel module, the plain computation it replaces, its inputs) for each kernel module."""
    torch.manual_seed(0)
    last = torch.channels_last
    x = torch.randn(2, 6, 10, 12).contiguous(memory_format=last)
    parts = (torch.randn(2, 6, 10, 12).contiguous(memory_format=last), torch.randn(2, 1, 10, 12))
    conv3, wide = nn.Conv2d(6, 6, 3, padding=2, dilation=2), nn.Conv2d(6, 3, 9, padding=4)
    cat_conv, cat_one = ConcatConv2d(7, 4, 3, padding=1), ConcatConv2d(7, 1, 3, padding=1)
    body = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.PReLU(6), nn.Conv2d(6, 6, 3, padding=1), nn.Identity())
    skip_body = copy.deepcopy(body)
    skip_body[2] = ops.FusedConv2d.from_conv(skip_body[2])
    return [
        (ops.FusedConv2d.from_conv(conv3, act="relu"), lambda y: conv3(y).relu(), (x,)),
        (ops.SplitConv2d.from_conv(cat_conv, act="sigmoid"), lambda *p: cat_conv(*p).sigmoid(), parts),
        (ops.TapConv2d.from_conv(cat_one), cat_one, parts),
        (ops.FewOutputConv2d.from_conv(wide), wide, (x,)),
        (ops.MaxPoolX2(), nn.MaxPool2d(2), (x,)),
        (ops.SkipPostOp(skip_body), lambda y: y + body(y), (x,)),
        (ops.CosineScaleInPlace(), CosineScale(), (x, torch.tensor(2.0))),
    ]


@pytest.mark.parametrize("case", range(7))
def test_kernel_modules_equal_the_plain_modules(case):
    kernel, plain, inputs = _kernel_cases()[case]
    with torch.inference_mode():
        expected = plain(*inputs)
        torch.testing.assert_close(kernel(*[x.clone() for x in inputs]), expected, rtol=1e-5, atol=1e-5)
    # with autograd on: the same values and a gradient (the kernels fall back where they must)
    inputs = [x.detach().requires_grad_() for x in inputs]
    out = kernel(*inputs)
    torch.testing.assert_close(out, plain(*inputs), rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in inputs)
    if isinstance(plain, nn.Conv2d):  # it took over the plain layer's parameters, under the same names
        mine, theirs = dict(kernel.named_parameters()), dict(plain.named_parameters())
        assert list(mine) == list(theirs) and all(mine[name] is theirs[name] for name in theirs)


@pytest.mark.parametrize("kwargs", [{}, {"fuse_activation": "sigmoid", "mask_activation": "paper"},
                                    {"hr_in_channels": 7, "features": 16}])
def test_ssnet_fused_inference_equals_eager(monkeypatch, kwargs):
    torch.manual_seed(0)
    net = prepare_for_inference(SSNet(scale=4, lr_channels=8, **kwargs))
    lr_features = torch.randn(2, 8, 6, 6)
    ref = torch.rand(2, net.hr_in_channels, 24, 24)
    with torch.inference_mode():
        fused = net(lr_features, ref)
        eager = _eager(monkeypatch, lambda: net(lr_features, ref))
    for a, b in zip(fused, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_ccnet_fused_inference_equals_eager(monkeypatch):
    torch.manual_seed(0)
    net = prepare_for_inference(CCNet(width=0.25, out_channels=16, batch_norm=False, input_norm="local"))
    image = torch.rand(1, 3, 40, 48)
    with torch.inference_mode():
        for fn in (lambda: net(image, "ref"), lambda: net.features_on_grid(image, 8)):
            torch.testing.assert_close(fn(), _eager(monkeypatch, fn), rtol=1e-5, atol=1e-5)


def test_folding_batch_norm_keeps_the_outputs():
    from lfrefsr.models.inference import fold_batch_norm
    from lfrefsr.models.srresnet import SRResNetNN

    torch.manual_seed(0)
    sisr = SRResNetNN(scale=4, num_blocks=2, features=8).eval()
    for module in sisr.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    lr = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        before = [sisr.features(lr), sisr(lr)]
        for block in sisr.body:
            fold_batch_norm(block.body)
        fold_batch_norm(sisr.body_tail)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in sisr.modules())
        after = [sisr.features(lr), sisr(lr)]
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shipped_networks_load_folded():
    from lfrefsr.weights import load_network

    sisr, _ = load_network("sisr")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sisr.modules())
    assert isinstance(sisr.tail, ops.FewOutputConv2d)


def test_the_benchmark_counts_fused_convolutions(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    from lfrefsr.bench import count_fused_convolutions

    count_fused_convolutions()
    torch.manual_seed(0)
    net = prepare_for_inference(SSNet(scale=4, lr_channels=8))
    lr_features, ref = torch.randn(1, 8, 6, 6), torch.rand(1, 3, 24, 24)

    def flops():
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(lr_features, ref)
        return counter.get_total_flops()

    fused, eager = flops(), _eager(monkeypatch, flops)
    assert eager > 0 and fused == eager


def test_the_benchmark_measures_prepared_networks():
    """``lfrefsr bench`` counts FLOPs under ``FlopCounterMode``, whose module tracker hooks every module call: no
    module may take a parameter as an argument (the trainable CC-Net temperature failed there once)."""
    from lfrefsr.bench import measure

    net = prepare_for_inference(CCNet(width=0.25, out_channels=8, batch_norm=False, normalize=True))
    seconds, flops = measure(lambda: net(torch.rand(1, 3, 24, 24), "ref"), "cpu", repeats=1)
    assert seconds > 0 and flops > 0
