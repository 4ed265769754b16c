"""CC-Net: shapes, NaN and gradient checks, the exact strided features, and that training learns."""

import numpy as np
import pytest
import torch

from lfrefsr.models import build_model
from lfrefsr.models.ccnet import CCNet


@pytest.mark.parametrize("kwargs", [{}, {"siamese": False}, {"normalize": True}, {"width": 0.5, "out_channels": 32}])
def test_shapes_nan_and_gradients(kwargs):
    torch.manual_seed(0)
    model = CCNet(**kwargs)
    image = torch.rand(2, 3, 40, 56)
    for branch in ("lr", "ref"):
        out = model(image, branch)
        assert out.shape == (2, model.out_channels, 40, 56)
        assert torch.isfinite(out).all()
    loss = model(image, "lr").square().mean() + model(image, "ref").mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_table1_defaults_and_siamese_sharing():
    model = CCNet()
    assert model.receptive_field == 65
    assert [c.out_channels for c in model.lr_tower.convs] == [16, 32, 64, 64, 64, 128]
    assert model.lr_tower is model.ref_tower
    assert CCNet(siamese=False).lr_tower is not CCNet(siamese=False).ref_tower


def test_receptive_field_is_65():
    model = CCNet(width=0.25, out_channels=8).eval()
    image = torch.rand(1, 3, 129, 129, requires_grad=True)
    model(image)[0, :, 64, 64].sum().backward()
    rows = torch.nonzero(image.grad.abs().sum((0, 1, 3)))[:, 0]
    assert int(rows.max() - rows.min()) + 1 == 65


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_grid_features_equal_dense_features(stride):
    torch.manual_seed(1)
    model = CCNet(width=0.5, out_channels=16).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    image = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        dense = model(image)[..., ::stride, ::stride]
        grid = model.features_on_grid(image, stride)
    torch.testing.assert_close(grid, dense, atol=1e-5, rtol=1e-5)


def test_build_model_takes_a_config_dict():
    model = build_model({"name": "ccnet", "width": 0.5, "out_channels": 16})
    assert model.out_channels == 16


def test_tiny_ccnet_lowers_its_loss_on_synthetic_pairs():
    from lfrefsr.training.ccnet import dense_loss
    from lfrefsr.training.pairs import PairConfig, load_training_photos, sample_pair

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    photos = load_training_photos(["skimage"])[:6]
    cfg = PairConfig(size=64, max_disparity=1.5, grid=3, motion=0.5, max_frame_gap=1, brightness=0.0)
    pairs = [sample_pair(rng, photos, cfg) for _ in range(2)]  # a fixed small set: the loss must go down on it
    model = CCNet(width=0.5, out_channels=32, normalize=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    kwargs = {"scale": 8, "window": 16, "noise": 0.0, "reference_input": "blurred"}
    losses = []
    for step in range(40):
        loss, _ = dense_loss(model, pairs, rng=np.random.default_rng(step), **kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


@pytest.mark.parametrize("input_norm", ["none", "local"])
def test_strip_reference_features_equal_whole_image(tmp_path, input_norm):
    """The matcher computes reference features in strips with a halo; the result must equal one pass."""
    from lfrefsr.correspondence import inputs
    from lfrefsr.correspondence.matchers import get_matcher
    from lfrefsr.training.common import save_checkpoint

    torch.manual_seed(0)
    config = {"name": "ccnet", "width": 0.25, "out_channels": 8, "batch_norm": False, "input_norm": input_norm,
              "input_norm_sigma": 3.0, "normalize": True}
    model = build_model(config)
    save_checkpoint(tmp_path / "w.pt", model_config=config, state_dict=model.state_dict(), reference_input="blurred")
    ref = torch.rand(3, 104, 72)
    with torch.no_grad():
        whole = model.eval()(inputs.ref_input(ref[None], 8, "blurred"), "ref")[0]
    for strip in (24, None):  # None: one strip here, the network's output returned as it is
        features = get_matcher("ccnet", weights=tmp_path / "w.pt", strip=strip).prepare(ref)
        torch.testing.assert_close(features, whole, atol=1e-5, rtol=1e-5)
        assert features.permute(1, 2, 0).is_contiguous()  # channels-last (C, H, W), the engine's layout
    with torch.no_grad():
        grid = model.features_on_grid(torch.rand(1, 3, 40, 48), 8)
    assert grid.shape == (1, 8, 5, 6)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_channels_last_forward_equals_contiguous_and_has_gradients(batch_norm):
    """Channels-last weights and input (as the input normalisation returns it): same numbers, same gradients."""
    torch.manual_seed(0)
    plain = CCNet(width=0.25, out_channels=16, normalize=True, batch_norm=batch_norm, input_norm="local").eval()
    fast = CCNet(width=0.25, out_channels=16, normalize=True, batch_norm=batch_norm, input_norm="local").eval()
    fast.load_state_dict(plain.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    image = torch.rand(2, 3, 40, 36)
    out_plain = plain(image, "ref")
    out_fast = fast(image.contiguous(memory_format=torch.channels_last), "ref")
    assert out_fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_fast, out_plain, atol=1e-5, rtol=1e-4)
    out_fast.square().sum().backward()
    out_plain.square().sum().backward()
    torch.testing.assert_close(fast.lr_tower.fc.weight.grad, plain.lr_tower.fc.weight.grad, atol=1e-3, rtol=1e-3)

