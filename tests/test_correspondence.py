"""The matching engine against brute force, ZNCC against a direct computation, and `eval match`."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from oracles import brute_force
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lfrefsr.correspondence.engine import match
from lfrefsr.correspondence.zncc import zncc_match
from lfrefsr.metrics import rgb_to_y


@pytest.mark.parametrize("block", [1, 3, 8])
@pytest.mark.parametrize("with_bias", [False, True])
def test_engine_argmax_equals_brute_force(block, with_bias):
    torch.manual_seed(block)
    target, ref = torch.randn(6, 7, 9), torch.randn(6, 60, 70)
    bias = torch.randn(60, 70) if with_bias else None
    found = match(target, ref, stride=8, search_range=13, block=block, ref_bias=bias)
    torch.testing.assert_close(found.position, brute_force(target, ref, stride=8, search_range=13, ref_bias=bias))
    assert found.flow.abs().max() <= 13


@pytest.mark.parametrize("stride, search_range", [(4, 6), (3, 7), (8, 3), (2, 20)])
def test_engine_argmax_equals_brute_force_for_any_stride_and_range(stride, search_range):
    # 2 r + 1 = full * stride + end with end 1, 0, 7 and 1: the row maxima split every window into runs of stride
    torch.manual_seed(stride)
    target, ref = torch.randn(5, 9, 8), torch.randn(5, 9 * stride + 5, 8 * stride + 3)
    found = match(target, ref, stride=stride, search_range=search_range, block=4)
    torch.testing.assert_close(found.position,
                               brute_force(target, ref, stride=stride, search_range=search_range))


@pytest.mark.parametrize("group", [1, 5, 7, 64])
def test_engine_argmax_equals_brute_force_for_any_row_group(group):
    # the reference is streamed ``group`` rows at a time: a group that splits centre rows' ranges unevenly, one row,
    # and one group taller than the image all give the whole-window argmax
    torch.manual_seed(group)
    target, ref = torch.randn(5, 9, 8), torch.randn(5, 9 * 4 + 5, 8 * 4 + 3)
    bias = torch.randn(ref.shape[1:])
    found = match(target, ref, stride=4, search_range=6, block=3, group=group, ref_bias=bias)
    torch.testing.assert_close(found.position, brute_force(target, ref, stride=4, search_range=6, ref_bias=bias))


@pytest.mark.parametrize("group", [2, 9])
def test_row_candidates_are_each_centres_k_best_rows(group):
    from lfrefsr.correspondence.aggregate import row_candidates

    torch.manual_seed(group)
    stride, radius, k = 4, 5, 3
    target, ref = torch.randn(5, 6, 7), torch.randn(5, 6 * 4 + 3, 7 * 4 + 2)
    found = row_candidates(target, ref, stride=stride, radius=radius, ref_bias=None, block=3, k=k, group=group)
    height, width = ref.shape[1:]
    for m in range(6):
        for n in range(7):
            cy, cx = m * stride, n * stride
            ys = torch.arange(max(0, cy - radius), min(height, cy + radius + 1))
            xs = torch.arange(max(0, cx - radius), min(width, cx + radius + 1))
            scores = torch.einsum("c,cyx->yx", target[:, m, n], ref[:, ys][:, :, xs])  # (rows, cols) of the window
            row_best, column = scores.max(dim=1)
            top = row_best.topk(k).indices  # the k best rows, best first
            expected = torch.stack([xs[column[top]] - cx, ys[top] - cy])  # (2, k) as (dx, dy)
            torch.testing.assert_close(found[:, :, m, n].t(), expected)


def _noisy_shifted_grid(seed: int, noise: float):
    """Target centre features = the reference's at a constant displacement (+3, -2), plus noise strong enough that
    single centres go astray."""
    torch.manual_seed(seed)
    ref = F.normalize(torch.randn(6, 64, 72), dim=0)  # unit features: the true position scores highest
    target = ref[:, 0 - 2 + 8 : 64 - 2 : 8, 3 : 72 : 8][:, :7, :8].clone()  # centre (m, n) -> (8n + 3, 8m + 6)
    ref = ref[:, 8:, :]  # re-origin: centre (m, n) -> (8n + 3, 8m - 2)
    return target + noise * torch.randn_like(target), ref


@pytest.mark.parametrize("aggregate", [3, 5])
@pytest.mark.parametrize("with_bias", [False, True])
def test_aggregated_engine_equals_brute_force(aggregate, with_bias):
    target, ref = _noisy_shifted_grid(aggregate, noise=0.15)
    bias = 0.1 * torch.randn(ref.shape[1:]) if with_bias else None
    found = match(target, ref, stride=8, search_range=9, block=3, aggregate=aggregate, ref_bias=bias)
    expected = brute_force(target, ref, stride=8, search_range=9, aggregate=aggregate, ref_bias=bias)
    # row 0's true matches lie above the reference: there every score is noise, and the aggregated best of pure
    # noise need not be among the candidates, which is the two-pass search's one approximation
    torch.testing.assert_close(found.position[:, 1:], expected[:, 1:])
    single = brute_force(target, ref, stride=8, search_range=9, ref_bias=bias)
    assert (single[:, 1:] != expected[:, 1:]).any(0).sum() >= 5  # aggregation changes matches here


def test_aggregation_outvotes_a_periodic_confusion():
    target, ref = _noisy_shifted_grid(0, noise=0.0)
    true_flow = torch.tensor([3.0, -2.0])
    target[:, 3, 4] = ref[:, 3 * 8 - 2 + 5, 4 * 8 + 3 + 4]  # one centre looks like a copy 4 px right, 5 px down
    single = match(target, ref, stride=8, search_range=9)
    torch.testing.assert_close(single.flow[:, 3, 4], true_flow + torch.tensor([4.0, 5.0]))
    for direction in (None, (3.0, -2.0)):
        if direction is not None:  # epipolar: the wrong copy on the line through the truth, one step further
            target[:, 3, 4] = ref[:, 3 * 8 - 2 - 2, 4 * 8 + 3 + 3]
        voted = match(target, ref, stride=8, search_range=9, aggregate=3, direction=direction)
        inner = voted.flow[:, 1:-1, 1:-1].reshape(2, -1)
        torch.testing.assert_close(inner, true_flow[:, None].expand_as(inner))


def test_aggregate_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        match(torch.randn(4, 3, 3), torch.randn(4, 24, 24), stride=8, search_range=5, aggregate=4)


def test_subpixel_refinement_finds_a_half_pixel_shift():
    # a smooth reference and features equal to the reference shifted by half a pixel
    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    ref = torch.stack([-((xs - 20) ** 2 + (ys - 20) ** 2) / 50, torch.ones_like(xs)])  # (2, 40, 40)
    target = torch.tensor([1.0, 0.0]).view(2, 1, 1).expand(2, 5, 5).contiguous()
    found = match(target, ref, stride=8, search_range=39, subpixel=True)
    assert torch.allclose(found.position[:, 0, 0], torch.tensor([20.0, 20.0]))  # a symmetric peak stays put
    refined = match(target, ref + torch.stack([xs * 0.02, 0 * xs]), stride=8, search_range=39, subpixel=True)
    assert 20.0 < float(refined.position[0, 0, 0]) < 21.0


def test_epipolar_mode_searches_along_the_line():
    torch.manual_seed(0)
    ref = torch.randn(8, 50, 50)
    target = ref[:, ::8, ::8].clone()  # every centre's best match is itself...
    target[:, 2, 2] = ref[:, 16 + 5, 16 + 5]  # ...but one centre matches 5 px down the diagonal
    found = match(target, ref, stride=8, search_range=10, direction=(1, 1))
    torch.testing.assert_close(found.position[:, 2, 2], torch.tensor([21.0, 21.0]))
    torch.testing.assert_close(found.position[:, 1, 1], torch.tensor([8.0, 8.0]))
    horizontal = match(target, ref, stride=8, search_range=10, direction=(1, 0))
    assert float(horizontal.position[1, 2, 2]) == 16.0  # a horizontal search cannot leave the row


@pytest.mark.parametrize("direction", [(1.0, 0.37), (-0.4, 1.0), (1.0, -1.0)])
def test_epipolar_scores_equal_bilinear_sampling(direction):
    from lfrefsr.warp import sample

    torch.manual_seed(0)
    target, ref, bias = torch.randn(6, 5, 6), torch.randn(6, 37, 45), torch.randn(37, 45)
    found = match(target, ref, stride=8, search_range=12, ref_bias=bias, direction=direction)
    dx, dy = (d / max(abs(v) for v in direction) for d in direction)
    steps = torch.arange(-12, 13, dtype=torch.float32)
    maps = torch.cat([ref, bias[None]])[None]  # (1, C+1, H, W): the bias sampled like a channel
    for m in range(5):
        for n in range(6):
            coords = torch.stack([n * 8 + steps * dx, m * 8 + steps * dy]).view(1, 2, 1, -1)  # (1, 2, 1, K)
            sampled = sample(maps, coords, padding_mode="zeros")[0, :, 0]  # (C+1, K): grid_sample, align_corners
            scores = target[:, m, n] @ sampled[:6] + sampled[6]
            inside = (coords[0, 0, 0] >= 0) & (coords[0, 0, 0] <= 44) & (coords[0, 1, 0] >= 0) & (coords[0, 1, 0] <= 36)
            best = scores.masked_fill(~inside, float("-inf")).max()
            torch.testing.assert_close(found.score[m, n], best, rtol=1e-4, atol=1e-4)
    # several centre rows per pass (as on a GPU) give the same matches
    from lfrefsr.correspondence.epipolar import match_line

    batched = match_line(target, ref, stride=8, search_range=12, ref_bias=bias, direction=direction, subpixel=False,
                         rows_per_pass=3)
    torch.testing.assert_close(batched.position, found.position)
    torch.testing.assert_close(batched.score, found.score)


def test_zncc_equals_a_direct_computation():
    torch.manual_seed(0)
    target, ref = torch.rand(3, 24, 32), torch.rand(3, 26, 30)
    found = zncc_match(target, ref, stride=8, search_range=5, patch=7, chunk=4)
    gray_t = F.pad(rgb_to_y(target).float()[None, None], (3, 3, 3, 3), mode="replicate")[0, 0]
    gray_r = F.pad(rgb_to_y(ref).float()[None, None], (3, 3, 3, 3), mode="replicate")[0, 0]
    for i, cy in enumerate(range(0, 24, 8)):
        for j, cx in enumerate(range(0, 32, 8)):
            patch = gray_t[cy : cy + 7, cx : cx + 7].flatten()
            patch = (patch - patch.mean()) / patch.std(unbiased=False)
            def zncc(x, y, patch=patch):
                window = gray_r[y : y + 7, x : x + 7].flatten()
                return float((patch * (window - window.mean()) / window.std(unbiased=False)).mean())

            best = max((zncc(x, y), x, y)
                       for y in range(max(0, cy - 5), min(26, cy + 6)) for x in range(max(0, cx - 5), min(30, cx + 6)))
            assert found.score[i, j] == pytest.approx(best[0], abs=1e-3)
            assert (int(found.position[0, i, j]), int(found.position[1, i, j])) == best[1:]


def _write_pair(folder, seed=0):
    from lfrefsr.data.synthetic import make_lightfield
    from lfrefsr.io.flow import write_flo
    from lfrefsr.io.images import write_image

    data = make_lightfield(grid=2, size=(96, 128), seed=seed, max_disparity=2.0)
    folder.mkdir(parents=True)
    write_image(folder / "target.png", data["hr"][1, 1])
    write_image(folder / "reference.png", data["hr"][0, 0])
    write_flo(folder / "flow.flo", data["flow"][1, 1])
    write_image(folder / "valid.png", np.repeat((~data["occlusion"][1, 1])[None].astype(np.uint8) * 255, 3, 0))


def test_eval_match_json(tmp_path):
    from conftest import run_cli

    _write_pair(tmp_path / "pairs" / "a", seed=1)
    _write_pair(tmp_path / "pairs" / "b", seed=2)
    out = tmp_path / "m.json"
    result = run_cli(["eval", "match", str(tmp_path / "pairs"), "--json", str(out), "--methods",
                      "zncc_blurry,gradient", "--search-range", "12", "-q"])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "match" and len(doc["pairs"]) == 2
    for name in ("zncc_blurry", "gradient"):
        acc = doc["methods"][name]["acc"]
        assert sorted(acc, key=int) == [str(t) for t in range(7)]
        assert doc["methods"][name]["n"] > 50
        values = [acc[str(t)] for t in range(7)]
        assert values == sorted(values) and values[-1] > 50  # monotone in the threshold, and it finds matches


def test_eval_match_aggregate_option(tmp_path):
    from conftest import run_cli

    _write_pair(tmp_path / "p", seed=3)
    runs = {}
    for size in ("1", "3"):
        out = tmp_path / f"m{size}.json"
        result = run_cli(["eval", "match", str(tmp_path / "p"), "--json", str(out), "--methods", "ccnet",
                          "--search-range", "12", "--aggregate", size, "-q"])
        assert result.exit_code == 0, result.output
        runs[size] = json.loads(out.read_text())["methods"]["ccnet"]
        assert runs[size]["aggregate"] == int(size)
    assert runs["1"]["n"] == runs["3"]["n"] and runs["1"]["acc"] != runs["3"]["acc"]
    bad = run_cli(["eval", "match", str(tmp_path / "p"), "--json", str(tmp_path / "x.json"), "--aggregate", "4"])
    assert bad.exit_code == 2 and "odd" in bad.output and not (tmp_path / "x.json").exists()


def test_eval_match_malformed_flow_is_one_line(tmp_path):
    from conftest import run_cli

    _write_pair(tmp_path / "p")
    (tmp_path / "p" / "flow.flo").write_bytes(b"PIEH" + b"\0" * 10)
    result = run_cli(["eval", "match", str(tmp_path / "p"), "--json", str(tmp_path / "m.json"),
                      "--methods", "gradient"])
    assert result.exit_code != 0
    assert "flow.flo" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


def test_topk_best_equals_match_and_is_sorted():
    from lfrefsr.correspondence.engine import match_topk

    torch.manual_seed(3)
    target, ref = torch.randn(5, 6, 7), torch.randn(5, 50, 60)
    bias = torch.randn(50, 60)
    positions, scores = match_topk(target, ref, stride=8, k=3, search_range=9, ref_bias=bias, block=4)
    torch.testing.assert_close(positions[0], brute_force(target, ref, stride=8, search_range=9, ref_bias=bias))
    assert (scores[0] >= scores[1]).all() and (scores[1] >= scores[2]).all()
    assert (positions[0] != positions[1]).any(0).all()


class _OnlyOn(TorchDispatchMode):
    """Fails any aten op that takes or makes a tensor off ``device`` (0-d CPU scalars aside): run on ``meta``, code
    that allocates on a fixed device (``torch.zeros(n)``, a CPU kernel) mixes devices and is caught here, while meta
    tensors themselves run no arithmetic."""

    def __init__(self, device: str):
        super().__init__()
        self.device = torch.device(device)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.dim() > 0]
        copies = func.overloadpacket in (torch.ops.aten._to_copy, torch.ops.aten.lift_fresh)  # ``.to(device)``
        if not copies:
            assert all(t.device == self.device for t in inputs), f"{func} takes {[str(t.device) for t in inputs]}"
        out = func(*args, **kwargs)
        made = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.dim() > 0]
        assert copies or all(t.device == self.device for t in made), f"{func} makes {[str(t.device) for t in made]}"
        return out


def test_match_topk_allocates_on_its_inputs_device():
    from lfrefsr.correspondence.engine import match_topk

    meta = {"device": "meta"}
    target, ref, bias = torch.empty(5, 6, 7, **meta), torch.empty(5, 50, 60, **meta), torch.empty(50, 60, **meta)
    with _OnlyOn("meta"):
        positions, scores = match_topk(target, ref, stride=8, k=3, search_range=9, ref_bias=bias, block=4)
    assert positions.device.type == scores.device.type == "meta"
    assert positions.shape == (3, 2, 6, 7) and scores.shape == (3, 6, 7) and scores.dtype == torch.float32


def test_patchmatch_allocates_on_its_device():
    from lfrefsr.methods import get_method

    method = get_method("patchmatch", scale=8, search_range=16, device="meta")
    lr, ref = torch.empty(3, 8, 12, device="meta"), torch.empty(3, 64, 96, device="meta")
    with _OnlyOn("meta"):
        sr = method(lr, ref)
    assert sr.device.type == "meta" and sr.shape == (3, 64, 96) and sr.dtype == torch.float32


def test_patchmatch_baseline_recovers_a_shifted_reference():
    from lfrefsr import metrics, protocol
    from lfrefsr.data.synthetic import make_lightfield
    from lfrefsr.methods import get_method

    data = make_lightfield(grid=2, size=(128, 128), seed=3, max_disparity=2.0)
    hr = protocol.to_float(data["hr"])
    lr = protocol.downsample(hr[1, 1], 8)
    sr = get_method("patchmatch", scale=8, search_range=16)(lr, hr[0, 0])
    assert sr.shape == (3, 128, 128)
    assert metrics.psnr(sr, hr[1, 1]) > metrics.psnr(protocol.upsample(lr, 8), hr[1, 1]) + 1.0


def test_dense_flow_interpolates_between_the_centres_and_holds_beyond():
    from lfrefsr.correspondence.matches import Matches

    rows, cols, stride = 3, 4, 8
    ys, xs = torch.meshgrid(torch.arange(rows) * stride, torch.arange(cols) * stride, indexing="ij")
    flow = torch.stack([0.5 * xs + 1.0, -0.25 * ys]).float()  # affine in the HR pixel: bilinear is exact on it
    matches = Matches(stride, flow + torch.stack([xs, ys]).float(), torch.zeros(rows, cols), torch.ones(rows, cols))
    dense = matches.dense_flow((rows * stride, cols * stride))  # (2, 24, 32)
    assert dense.shape == (2, 24, 32)
    torch.testing.assert_close(dense[:, ::stride, ::stride], flow)
    inside_y, inside_x = torch.meshgrid(torch.arange(17).float(), torch.arange(25).float(), indexing="ij")
    torch.testing.assert_close(dense[:, :17, :25], torch.stack([0.5 * inside_x + 1.0, -0.25 * inside_y]))
    torch.testing.assert_close(dense[:, 20, 30], flow[:, -1, -1])  # held beyond the last centre


def test_dis_refined_from_a_start_finds_a_motion_dis_alone_misses():
    import cv2

    from lfrefsr.methods.flowwarp import dis_flow

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((160, 320)) * 255).astype(np.uint8), (0, 0), 3)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX)
    shift = 60  # target(x) = source(x + 60): beyond DIS's coarsest scale on 160 px
    target, source = np.ascontiguousarray(texture[:, shift : shift + 160]), np.ascontiguousarray(texture[:, :160])
    alone = dis_flow(target, source)
    start = torch.zeros(2, 160, 160)
    start[0] = shift - 2
    refined = dis_flow(target, source, init=start)
    assert abs(float(alone[0].median()) - shift) > 10
    assert abs(float(refined[0].median()) - shift) < 0.5
