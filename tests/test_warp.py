import torch

from lfrefsr.warp import out_of_bounds, warp


def test_integer_flow_is_an_exact_shift():
    source = torch.rand(1, 3, 10, 12)
    flow = torch.zeros(1, 2, 10, 12)
    flow[:, 0] = 2.0  # x + 2
    flow[:, 1] = -1.0  # y - 1
    out = warp(source, flow)
    torch.testing.assert_close(out[0, :, 1:, :10], source[0, :, :-1, 2:])
    oob = out_of_bounds(flow, (10, 12))
    assert oob[0, 0].all() and oob[0, :, 10:].all() and not oob[0, 1:, :10].any()


def test_fractional_flow_interpolates_linearly():
    ramp = torch.arange(8.0).repeat(1, 1, 4, 1)  # (1, 1, 4, 8), value = x
    flow = torch.full((1, 2, 4, 6), 0.25)
    torch.testing.assert_close(warp(ramp, flow)[0, 0, 0], torch.arange(6.0) + 0.25)
