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
        "ssnet": ({"name": "ssnet", "scale": 8, "lr_channels": 16, "features": 8}, SSNet),
    }
    paths = {}
    for kind, (config, cls) in configs.items():
        model = cls(**{k: v for k, v in config.items() if k != "name"})
        paths[kind] = tmp_path / f"{kind}.pt"
        save_checkpoint(paths[kind], model_config=config, state_dict=model.state_dict(), reference_input="blurred")
    return paths


@pytest.mark.parametrize("variant,options", [("default", {}), ("paper", {"stride": 4}), ("default", {"epipolar": False}),
                                             ("default", {"precision": "bf16"})])
def test_refsr_method_end_to_end(tiny_weights, variant, options):
    from lfrefsr.methods import ViewHint, get_method

    method = get_method("refsr", scale=8, variant=variant, ccnet_weights=tiny_weights["ccnet"],
                        sisr_weights=tiny_weights["sisr"], ssnet_weights=tiny_weights["ssnet"], search_range=12,
                        **options)
    ref = torch.rand(3, 72, 88)
    lr = torch.rand(3, 9, 11)
    sr = method.super_resolve(lr, method.prepare(ref), ViewHint(grid_offset=(1, 2)))
    assert sr.shape == (3, 72, 88) and torch.isfinite(sr).all() and 0 <= sr.min() and sr.max() <= 1


def test_sisr_method_plain_and_sliding(tiny_weights):
    from lfrefsr.methods import get_method

    lr = torch.rand(3, 10, 13)
    plain = get_method("sisr", scale=8, weights=tiny_weights["sisr"])(lr, None)
    sliding = get_method("sisr", scale=8, weights=tiny_weights["sisr"], sliding=True, patch=6, stride=2)(lr, None)
    assert plain.shape == sliding.shape == (3, 80, 104)
    assert (plain - sliding).abs().mean() < 0.1  # same network, different border statistics
    assert get_method("sisr", scale=4, weights=tiny_weights["sisr"])(lr, None).shape == (3, 40, 52)
