"""SRResNet + NN, SS-Net and the sliding-window synthesis."""

import pytest
import torch

from lfrefsr.models.srresnet import SRResNetNN
from lfrefsr.models.ssnet import SSNet
from lfrefsr.synthesis import gaussian_blur, synthesize


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("variant", [{}, {"mask_activation": "paper", "fuse_activation": "sigmoid", "residual": False}])
def test_ssnet_shapes_nan_and_gradients(scale, variant):
    torch.manual_seed(0)
    net = SSNet(scale=scale, lr_channels=16, features=8, **variant)
    lr_features = torch.randn(2, 16, 8, 8)
    ref = torch.rand(2, 3, 8 * scale, 8 * scale, requires_grad=True)
    sr, mask = net(lr_features, ref, torch.rand(2, 3, 8 * scale, 8 * scale))
    assert sr.shape == (2, 3, 8 * scale, 8 * scale) and mask.shape == (2, 1, 8 * scale, 8 * scale)
    assert torch.isfinite(sr).all() and ((mask >= 0) & (mask <= 1)).all()
    if variant:
        assert (mask >= 0.5).all()  # the literal Eq. 2 keeps masks in [0.5, 1)
    sr.mean().backward()
    assert torch.isfinite(ref.grad).all() and ref.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_srresnet_shapes_nan_and_gradients(scale):
    torch.manual_seed(0)
    net = SRResNetNN(scale=scale, num_blocks=2, features=16)
    lr = torch.rand(2, 3, 6, 7)
    assert net.features(lr).shape == (2, 16, 6, 7)
    sr = net(lr)
    assert sr.shape == (2, 3, 6 * scale, 7 * scale) and torch.isfinite(sr).all()
    sr.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


class _Echo(torch.nn.Module):
    """Predicts exactly its base patch, with a constant or a random mask."""

    scale, residual = 8, True

    def __init__(self, random_mask=False):
        super().__init__()
        self.random_mask = random_mask

    def forward(self, lr_features, ref, base):
        mask = torch.rand_like(base[:, :1]) if self.random_mask else torch.full_like(base[:, :1], 0.7)
        return base + 0 * ref, mask


class _Noise(torch.nn.Module):
    """Predicts a different random patch every call, with a constant mask."""

    def forward(self, lr_features, ref, base):
        return torch.rand_like(base), torch.full_like(base[:, :1], 0.3)


@pytest.mark.parametrize("stride", [1, 3, 8])
@pytest.mark.parametrize("size", [(8, 8), (13, 21)])
def test_fusion_of_identical_patches_reproduces_them(stride, size):
    torch.manual_seed(0)
    h, w = size
    image = torch.rand(3, h * 8, w * 8)
    sr, _ = synthesize(_Echo(random_mask=True), torch.randn(4, h, w), torch.rand(3, h * 8, w * 8),
                       torch.zeros(2, h, w), image, scale=8, stride=stride, blend="mask", batch=5)
    torch.testing.assert_close(sr, image)


def test_mask_weighting_equals_plain_averaging_when_masks_are_equal():
    args = (torch.randn(4, 12, 12), torch.rand(3, 96, 96), torch.zeros(2, 12, 12), torch.rand(3, 96, 96))
    torch.manual_seed(1)
    masked, _ = synthesize(_Noise(), *args, scale=8, stride=2, blend="mask")
    torch.manual_seed(1)
    plain, _ = synthesize(_Noise(), *args, scale=8, stride=2, blend="mean")
    torch.testing.assert_close(masked, plain)


def test_shift_patches_follow_the_match():
    """With a constant flow, a patch's reference (shift mode) is the reference moved by that flow."""
    captured = []

    class Capture(torch.nn.Module):
        residual = False

        def forward(self, lr_features, ref, base):
            captured.append(ref)
            return ref, torch.ones_like(ref[:, :1])

    ref = torch.rand(3, 64, 64)
    flow = torch.zeros(2, 16, 16)
    flow[0], flow[1] = 5, -3  # x + 5, y - 3
    synthesize(Capture(), torch.randn(4, 16, 16), ref, flow, None, scale=4, stride=4, ref_patches="shift")
    patch = captured[0][4]  # origins (0|4|8) x (0|4|8): the 5th is (4, 4) LR -> HR (16, 16)
    torch.testing.assert_close(patch, ref[:, 16 - 3 : 16 - 3 + 32, 16 + 5 : 16 + 5 + 32])


def test_gaussian_blur_keeps_constants():
    constant = torch.full((1, 1, 20, 20), 0.4)
    torch.testing.assert_close(gaussian_blur(constant, 3.0), constant)


@pytest.fixture
def tiny_weights(tmp_path):
    """Randomly initialised small networks saved as weights files (the method code path, not the shipped quality)."""
    from lfrefsr.models.ccnet import CCNet
    from lfrefsr.training.common import save_checkpoint

    torch.manual_seed(0)
    configs = {
        "ccnet": ({"name": "ccnet", "width": 0.25, "out_channels": 16, "normalize": True}, CCNet),
        "sisr": ({"name": "srresnet", "scale": 8, "num_blocks": 2, "features": 16}, SRResNetNN),
        "ssnet": ({"name": "ssnet", "scale": 8, "lr_channels": 16, "features": 8, "hr_in_channels": 7}, SSNet),
        "ssnet_paper": ({"name": "ssnet", "scale": 8, "lr_channels": 16, "features": 8}, SSNet),
    }
    paths = {}
    for kind, (config, cls) in configs.items():
        model = cls(**{k: v for k, v in config.items() if k != "name"})
        paths[kind] = tmp_path / f"{kind}.pt"
        save_checkpoint(paths[kind], model_config=config, state_dict=model.state_dict(), reference_input="blurred")
    return paths


def _networks(tiny_weights, variant: str) -> dict:
    """The tiny networks as the options of refsr's ``variant`` name them."""
    if variant == "default":
        return {"sisr_weights": tiny_weights["sisr"], "ssnet_weights": tiny_weights["ssnet"]}
    return {"sisr_weights": tiny_weights["sisr"], "ssnet_weights": tiny_weights["ssnet_paper"],
            "ccnet_weights": tiny_weights["ccnet"], "search_range": 12}


@pytest.mark.parametrize("variant,options", [("default", {}), ("default", {"tile": 4, "back_project": 0}),
                                             ("paper", {"stride": 4}), ("paper", {"epipolar": True, "stride": 8}),
                                             ("default", {"precision": "bf16"}),
                                             ("default", {"ccnet_candidates": True, "medium_candidate": True,
                                                          "ccnet_search": 16})])
def test_refsr_method_end_to_end(tiny_weights, variant, options):
    from lfrefsr.methods import ViewHint, get_method

    method = get_method("refsr", scale=8, variant=variant, **_networks(tiny_weights, variant), **options)
    ref = torch.rand(3, 72, 88)
    lr = torch.rand(3, 9, 11)
    sr, mask = method.super_resolve_with_mask(lr, method.prepare(ref), ViewHint(grid_offset=(1, 2)))
    assert sr.shape == (3, 72, 88) and torch.isfinite(sr).all() and 0 <= sr.min() and sr.max() <= 1
    assert mask.shape == (1, 72, 88) and ((mask >= 0) & (mask <= 1)).all()


@pytest.mark.parametrize("variant", ["default", "paper"])
def test_refsr_bf16_without_native_bf16_is_the_float32_method(tiny_weights, no_native_bf16, variant):
    """An AVX2-only CPU: --precision bf16 runs float32, with the float32 result to the bit."""
    from lfrefsr.methods import ViewHint, get_method

    common = dict(scale=8, variant=variant, **_networks(tiny_weights, variant),
                  **({"stride": 8} if variant == "paper" else {}))
    half, full = get_method("refsr", precision="bf16", **common), get_method("refsr", **common)
    assert half.precision == "fp32"
    if variant == "paper":
        assert half.matcher.dtype == torch.float32
    torch.manual_seed(0)
    ref, lr = torch.rand(3, 72, 88), torch.rand(3, 9, 11)
    hint = ViewHint(grid_offset=(1, 2))
    torch.testing.assert_close(half(lr, ref, hint), full(lr, ref, hint), rtol=0, atol=0)


def test_bf16_methods_run_bf16_where_native(tiny_weights, native_bf16):
    from lfrefsr.methods import get_method

    refsr = get_method("refsr", scale=8, sisr_weights=tiny_weights["sisr"], ssnet_weights=tiny_weights["ssnet"],
                       precision="bf16")
    sisr = get_method("sisr", scale=8, weights=tiny_weights["sisr"], precision="bf16")
    assert refsr.precision == sisr.precision == "bf16"


def test_refsr_refuses_an_ssnet_of_the_other_variant(tiny_weights):
    from lfrefsr.errors import LfrefsrError
    from lfrefsr.methods import get_method

    with pytest.raises(LfrefsrError, match="HR channels"):
        get_method("refsr", scale=8, sisr_weights=tiny_weights["sisr"], ssnet_weights=tiny_weights["ssnet_paper"])
    with pytest.raises(LfrefsrError, match="HR channels"):
        get_method("refsr_paper", scale=8, ccnet_weights=tiny_weights["ccnet"], sisr_weights=tiny_weights["sisr"],
                   ssnet_weights=tiny_weights["ssnet"])


def test_sisr_method_plain_and_sliding(tiny_weights):
    from lfrefsr.methods import get_method

    lr = torch.rand(3, 10, 13)
    plain = get_method("sisr", scale=8, weights=tiny_weights["sisr"])(lr, None)
    sliding = get_method("sisr", scale=8, weights=tiny_weights["sisr"], sliding=True, patch=6, stride=2)(lr, None)
    assert plain.shape == sliding.shape == (3, 80, 104)
    assert (plain - sliding).abs().mean() < 0.1  # same network, different border statistics
    assert get_method("sisr", scale=4, weights=tiny_weights["sisr"])(lr, None).shape == (3, 40, 52)


def test_sisr_back_projects_onto_the_lr_view_by_the_cameras_rule(tiny_weights):
    from lfrefsr import protocol
    from lfrefsr.errors import LfrefsrError
    from lfrefsr.methods import get_method
    from lfrefsr.methods.sisr import BACK_PROJECT

    lr = protocol.downsample(torch.rand(1, 3, 96, 128), 8)[0]

    def sisr(**options):
        method = get_method("sisr", scale=8, weights=tiny_weights["sisr"], **options)
        return method, method(lr, None)

    def lr_error(sr, psf=0.0):
        return (protocol.camera_downsample(sr[None], 8, psf)[0] - lr).abs().mean()

    (plain_method, plain), (default_method, default) = sisr(back_project=0), sisr()
    assert (plain_method.back_project_steps, default_method.back_project_steps) == (0, BACK_PROJECT["protocol"])
    assert lr_error(default) < 0.5 * lr_error(plain)
    lens_method, lens = sisr(psf=0.6)
    assert lens_method.back_project_steps == BACK_PROJECT["lens"]
    assert lr_error(lens, psf=0.6) < 0.5 * lr_error(plain, psf=0.6)
    noisy_method, noisy_sr = sisr(noise=3.0)  # its noise would come back: no steps
    assert noisy_method.back_project_steps == 0 and torch.equal(noisy_sr, plain)
    with pytest.raises(LfrefsrError, match="back_project=-1"):
        sisr(back_project=-1)


@pytest.mark.parametrize("sliding", [False, True])
def test_sisr_self_ensemble_is_equivariant_to_flips_and_quarter_turns(tiny_weights, sliding):
    from lfrefsr.methods import get_method

    torch.manual_seed(0)
    lr = torch.rand(3, 10, 13)
    options = {"weights": tiny_weights["sisr"], "back_project": 0, "sliding": sliding, "patch": 6, "stride": 3}
    alone, ensembled = (get_method("sisr", scale=8, ensemble=ensemble, **options) for ensemble in (False, True))
    turned = ensembled(torch.rot90(lr, 1, dims=(-2, -1)), None)
    torch.testing.assert_close(turned, torch.rot90(ensembled(lr, None), 1, dims=(-2, -1)), rtol=0, atol=1e-5)
    torch.testing.assert_close(ensembled(lr.flip(-1), None), ensembled(lr, None).flip(-1), rtol=0, atol=1e-5)
    # the network alone learned an orientation: what the ensemble removes
    assert (alone(lr.flip(-1), None) - alone(lr, None).flip(-1)).abs().max() > 1e-3


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_tiled_whole_image_synthesis_equals_one_piece(scale):
    from lfrefsr.synthesis import synthesize_image

    torch.manual_seed(0)
    net = SSNet(scale=scale, lr_channels=16, features=8, hr_in_channels=7).eval()
    with torch.no_grad():
        net.out.weight.normal_()  # the near-zero initial output would hide differences
    h, w = 21, 34
    args = (torch.randn(16, h, w), torch.rand(7, h * scale, w * scale), torch.rand(3, h * scale, w * scale))
    whole, whole_mask = synthesize_image(net, *args, scale=scale, tile=None)
    tiled, tiled_mask = synthesize_image(net, *args, scale=scale, tile=8)
    assert whole.shape == (3, h * scale, w * scale) and whole_mask.shape == (1, h * scale, w * scale)
    assert (tiled - whole).abs().max() <= 1e-5 and (tiled_mask - whole_mask).abs().max() <= 1e-5
    too_small, _ = synthesize_image(net, *args, scale=scale, tile=8, halo=1)
    assert (too_small - whole).abs().max() > 1e-3  # the halo is what makes tiles exact


def test_conv_pair_equals_the_convolution_of_the_concatenation():
    import torch.nn as nn

    from lfrefsr.models.ops import conv2d_split

    torch.manual_seed(0)
    conv = nn.Conv2d(12, 5, 3, padding=1)
    first, second = torch.randn(2, 7, 9, 11), torch.randn(2, 5, 9, 11)
    split = conv2d_split([first, second], conv.weight, conv.bias, padding=conv.padding)
    torch.testing.assert_close(split, conv(torch.cat([first, second], 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", [3, 5])
def test_conv_to_one_equals_the_convolution_of_the_concatenation(kernel):
    import torch.nn as nn

    from lfrefsr.models.ops import conv2d_taps

    torch.manual_seed(0)
    conv = nn.Conv2d(13, 1, kernel, padding=kernel // 2)
    parts = [torch.randn(2, 7, 9, 11), torch.randn(2, 5, 9, 11), torch.randn(2, 1, 9, 11)]
    expected = conv(torch.cat(parts, 1))
    def taps(parts):
        return conv2d_taps(parts, conv.weight, conv.bias, padding=conv.padding)

    torch.testing.assert_close(taps(parts), expected, rtol=1e-5, atol=1e-5)
    channels_last = [part.to(memory_format=torch.channels_last) for part in parts]
    torch.testing.assert_close(taps(channels_last), expected, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = taps([part.bfloat16() for part in parts])
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, rtol=0.05, atol=0.25)  # bf16 sums of ~100 terms


def test_sliding_windows_are_placed_and_weighted_exactly():
    """A network whose output at a pixel does not depend on where its window starts (nearest upsampling) gives the
    whole-image result through the weighted sliding windows, borders and odd sizes included; the weights favour each
    window's centre and never vanish."""
    from lfrefsr.methods.sisr import run_sliding, window_weight

    class Nearest(torch.nn.Module):
        scale = 8

        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=8, mode="nearest")

    lr = torch.rand(1, 3, 13, 21)
    torch.testing.assert_close(run_sliding(Nearest(), lr, patch=6, stride=2), Nearest()(lr))
    weight = window_weight(48)
    assert weight.min() > 0 and weight[23, 23] == weight.max() > weight[0, 23] > weight[0, 0]
