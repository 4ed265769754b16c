"""``prepare_for_inference``: the prepared network (BatchNorm folded, CPU kernels swapped in, channels-last) computes
what the plain network computes, in float32, under bfloat16 autocast, and on a CPU without native bfloat16."""

import copy

import pytest
import torch

from lfrefsr.models import ops
from lfrefsr.models.ccnet import CCNet
from lfrefsr.models.inference import prepare_for_inference
from lfrefsr.models.srresnet import SRResNetNN
from lfrefsr.models.ssnet import SSNet

CCNET = {"bn": {"width": 0.25, "out_channels": 16},
         "shipped-like": {"width": 0.25, "out_channels": 16, "batch_norm": False, "input_norm": "local",
                          "input_norm_sigma": 3.0, "normalize": True},
         "pseudo-siamese": {"width": 0.25, "out_channels": 16, "siamese": False, "batch_norm": False}}
SISR = {"bn": {"scale": 4, "num_blocks": 2, "features": 8},
        "no-bn": {"scale": 8, "num_blocks": 2, "features": 8, "batch_norm": False}}
SSNET = {"guide (hr_in_channels=7)": {"hr_in_channels": 7},
         "paper": {"mask_activation": "paper", "fuse_activation": "sigmoid", "residual": False},
         "paper input, default heads": {}}
CASES = [("ccnet", name) for name in CCNET] + [("sisr", name) for name in SISR] + [("ssnet", name) for name in SSNET]


def _randomise_batch_norm(model):
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model


def _network(family: str, name: str):
    """(plain network in eval mode, a function of a network -> its outputs) for one case."""
    torch.manual_seed(0)
    if family == "ccnet":
        net = CCNet(**CCNET[name])
        image = torch.rand(1, 3, 40, 48)

        def outputs(model):
            return [model(image, "lr"), model(image, "ref"), model.features_on_grid(image, 8),
                    model.features_on_grid(image, 4, "ref")]
    elif family == "sisr":
        net = SRResNetNN(**SISR[name])
        lr = torch.rand(2, 3, 7, 9)

        def outputs(model):
            return [model.features(lr), model(lr)]
    else:
        net = SSNet(scale=4, lr_channels=8, features=16, **SSNET[name])
        with torch.no_grad():
            net.out.weight.normal_(0, 0.1)  # the near-zero initial output would hide differences
        lr_features, ref = torch.randn(2, 8, 6, 5), torch.rand(2, net.hr_in_channels, 24, 20)
        base = torch.rand(2, 3, 24, 20)

        def outputs(model):
            return list(model(lr_features, ref, base))
    return _randomise_batch_norm(net).eval(), outputs


def _run(outputs, model, bf16=False):
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return [out.float() for out in outputs(model)]


def _assert_close_relative(actual, expected, tolerance):
    """Every output within ``tolerance`` of its own largest magnitude (bfloat16 keeps ~3 significant digits)."""
    for a, b in zip(actual, expected, strict=True):
        assert a.shape == b.shape
        scale = float(b.abs().max()) + 1e-6
        assert float((a - b).abs().max()) <= tolerance * scale, (float((a - b).abs().max()), scale)


def _kernel_modules(model) -> set[str]:
    return {type(m).__name__ for m in model.modules() if type(m).__module__ == ops.__name__}


EXPECTED_KERNELS = {"ccnet": {"FusedConv2d", "CosineScaleInPlace"},
                    "sisr": {"SkipPostOp", "FusedConv2d", "FewOutputConv2d"},
                    "ssnet": {"FusedConv2d", "MaxPoolX2", "SplitConv2d", "TapConv2d"}}


@pytest.mark.parametrize("family, name", CASES)
def test_prepared_network_equals_the_plain_one_in_float32(family, name):
    plain, outputs = _network(family, name)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    assert _kernel_modules(prepared) == EXPECTED_KERNELS[family]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert not prepared.training
    expected, actual = _run(outputs, plain), _run(outputs, prepared)
    for a, b in zip(actual, expected, strict=True):  # float32 rounding (BatchNorm folded, sums reordered): ~2e-7
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family, name", CASES)
def test_prepared_network_equals_the_plain_one_under_bf16_autocast(family, name, native_bf16):
    plain, outputs = _network(family, name)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    _assert_close_relative(_run(outputs, prepared, bf16=True), _run(outputs, plain, bf16=True), 0.03)
    _assert_close_relative(_run(outputs, prepared, bf16=True), _run(outputs, plain), 0.03)


@pytest.mark.parametrize("family, name", CASES)
def test_prepared_network_without_native_bf16(family, name, no_native_bf16):
    """An AVX2-only CPU: the fused primitive runs in float32 only; in bfloat16 every kernel takes its eager path."""
    plain, outputs = _network(family, name)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    for a, b in zip(_run(outputs, prepared), _run(outputs, plain), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    _assert_close_relative(_run(outputs, prepared, bf16=True), _run(outputs, plain, bf16=True), 0.03)


@pytest.mark.parametrize("family, name", [("ccnet", "shipped-like"), ("ssnet", "guide (hr_in_channels=7)")])
def test_preparing_keeps_the_state_dict(family, name):
    """Without BatchNorm to fold the prepared network has the plain one's keys and values: weights load either way."""
    plain, _ = _network(family, name)
    prepared = prepare_for_inference(copy.deepcopy(plain))
    before, after = plain.state_dict(), prepared.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    fresh = _network(family, name)[0]
    prepare_for_inference(fresh).load_state_dict(before)  # a prepared network still loads plain weights


@pytest.mark.parametrize("family, name", [("ccnet", "bn"), ("sisr", "bn"), ("ssnet", "paper")])
def test_preparing_twice_changes_nothing(family, name):
    plain, outputs = _network(family, name)
    once = prepare_for_inference(copy.deepcopy(plain))
    twice = prepare_for_inference(copy.deepcopy(once))
    assert [type(m) for m in twice.modules()] == [type(m) for m in once.modules()]
    for a, b in zip(_run(outputs, twice), _run(outputs, once), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_prepared_network_keeps_gradients_where_autograd_is_on():
    """The kernels fall back to the plain ops under autograd: same outputs, gradients reach the input."""
    plain, _ = _network("ssnet", "paper")
    prepared = prepare_for_inference(copy.deepcopy(plain))
    lr_features, ref = torch.randn(1, 8, 4, 4), torch.rand(1, 3, 16, 16, requires_grad=True)
    sr, mask = prepared(lr_features, ref)
    torch.testing.assert_close(sr, plain(lr_features, ref)[0], rtol=1e-5, atol=1e-6)
    (sr.sum() + mask.sum()).backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all() and ref.grad.abs().sum() > 0


@pytest.mark.parametrize("kind, shipped", [("ccnet", "ccnet"), ("sisr", "sisr"), ("ssnet", "ssnet"),
                                           ("ssnet", "ssnet_paper")])
def test_shipped_networks_load_prepared_and_equal_their_plain_form(kind, shipped):
    from lfrefsr.models import build_model
    from lfrefsr.weights import load_file, load_network, verify

    prepared, state = load_network(kind, shipped=shipped)
    assert _kernel_modules(prepared) and not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in prepared.parameters() if p.dim() == 4)
    plain = build_model(state["model_config"])
    plain.load_state_dict(load_file(verify(shipped))["state_dict"])
    plain.eval()
    torch.manual_seed(0)
    if kind == "ccnet":
        image = torch.rand(1, 3, 48, 40)
        run = [lambda m: m(image, "ref"), lambda m: m(image, "lr"), lambda m: m.features_on_grid(image, 8)]
    elif kind == "sisr":
        lr = torch.rand(1, 3, 10, 12)
        run = [lambda m: m.features(lr), lambda m: m(lr)]
    else:
        args = (torch.randn(1, 64, 6, 7), torch.rand(1, plain.hr_in_channels, 48, 56), torch.rand(1, 3, 48, 56))
        run = [lambda m: m(*args)[0], lambda m: m(*args)[1]]
    with torch.inference_mode():
        for fn in run:
            expected = fn(plain)
            torch.testing.assert_close(fn(prepared), expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
