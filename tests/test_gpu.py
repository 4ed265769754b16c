"""CUDA code paths: every learned method and the pipeline on a GPU give the CPU's result (float32) or close to it
(bf16 autocast). Skipped where torch sees no CUDA GPU, as on CI; run on a GPU machine with ``pytest tests/test_gpu.py``.
"""

import numpy as np
import pytest
import torch

from lfrefsr import metrics, protocol
from lfrefsr.data.synthetic import make_lightfield
from lfrefsr.methods import ViewHint, get_method

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")


@pytest.fixture(scope="module")
def pair():
    data = make_lightfield(grid=4, size=(192, 192), seed=11, max_disparity=1.5)
    hr = protocol.to_float(data["hr"])
    return {"ref": hr[0, 0], "hr": hr[2, 3], "lr": protocol.stored_lr(hr[2, 3], 8),
            "hint": ViewHint(grid_offset=(2, 3))}


def _run(name, pair, device, **options):
    method = get_method(name, scale=8, device=device, **options)
    sr = method.super_resolve(pair["lr"], method.prepare(pair["ref"]), pair["hint"])
    assert sr.device.type == torch.device(device).type and torch.isfinite(sr).all()
    return sr.cpu()


@pytest.fixture(autouse=True)
def _exact_float32():
    """cuDNN and cuBLAS use TF32 for float32 by default on Ampere and later; the equality checks want float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", ["flowwarp", "sisr", "refsr"])
def test_method_on_cuda_equals_cpu_in_float32(name, pair):
    cpu, gpu = _run(name, pair, "cpu"), _run(name, pair, "cuda")
    assert (gpu - cpu).abs().max() < 2e-3  # different kernels, same arithmetic up to rounding
    assert abs(metrics.psnr(gpu, pair["hr"]) - metrics.psnr(cpu, pair["hr"])) < 0.01


def test_refsr_paper_on_cuda_equals_cpu_in_float32(pair):
    cpu, gpu = _run("refsr_paper", pair, "cpu", stride=4), _run("refsr_paper", pair, "cuda", stride=4)
    # CC-Net argmax ties may break differently between kernels: compare quality, and most pixels exactly
    assert abs(metrics.psnr(gpu, pair["hr"]) - metrics.psnr(cpu, pair["hr"])) < 0.05
    assert ((gpu - cpu).abs() < 2e-3).float().mean() > 0.98


@pytest.mark.parametrize("name", ["sisr", "refsr", "refsr_paper"])
def test_bf16_autocast_on_cuda_is_close_to_float32(name, pair):
    options = {"stride": 4} if name == "refsr_paper" else {}
    full = _run(name, pair, "cuda", **options)
    half = _run(name, pair, "cuda", precision="bf16", **options)
    assert abs(metrics.psnr(half, pair["hr"]) - metrics.psnr(full, pair["hr"])) < 0.3


def test_ccnet_matches_on_cuda_equal_cpu(pair):
    from lfrefsr.correspondence.matchers import get_matcher

    flows = {}
    for device in ("cpu", "cuda"):
        matcher = get_matcher("ccnet", scale=8, search_range=100, device=device)
        flows[device] = matcher.match(pair["lr"], matcher.prepare(pair["ref"])).flow.float().cpu()  # (2, h, w)
    same = (flows["cuda"] - flows["cpu"]).abs().amax(0) < 0.05
    assert same.float().mean() > 0.98


def test_match_topk_on_cuda_equals_cpu():
    # every tensor it makes follows the inputs' device (the CPU-side check: test_correspondence, on ``meta``)
    from lfrefsr.correspondence.engine import match_topk

    torch.manual_seed(0)
    target, ref, bias = torch.randn(8, 12, 14), torch.randn(8, 96, 112), torch.randn(96, 112)
    found = {}
    for device in ("cpu", "cuda"):
        positions, scores = match_topk(target.to(device), ref.to(device), stride=8, k=4, search_range=20,
                                       ref_bias=bias.to(device))
        assert positions.device.type == scores.device.type == device
        found[device] = positions.cpu(), scores.cpu()
    assert (found["cuda"][0] == found["cpu"][0]).all(1).float().mean() > 0.99  # near-ties may swap two ranks
    torch.testing.assert_close(found["cuda"][1], found["cpu"][1], rtol=1e-4, atol=1e-4)


def test_patchmatch_on_cuda_equals_cpu(pair):
    cpu, gpu = (_run("patchmatch", pair, device, search_range=32) for device in ("cpu", "cuda"))
    assert abs(metrics.psnr(gpu, pair["hr"]) - metrics.psnr(cpu, pair["hr"])) < 0.05
    assert ((gpu - cpu).abs() < 2e-3).float().mean() > 0.98


def test_pipeline_on_cuda_equals_cpu(tmp_path):
    from lfrefsr.io.images import write_image
    from lfrefsr.io.ingest import ingest_lf
    from lfrefsr.pipeline import plan, run_serial

    hr = make_lightfield(grid=2, size=(64, 64), seed=3)["hr"]
    results = {}
    for device in ("cpu", "cuda"):
        folder = tmp_path / device
        folder.mkdir()
        for u in range(2):
            for v in range(2):
                write_image(folder / f"view_{u:02d}_{v:02d}.png", hr[u, v])
        store = ingest_lf(folder, tmp_path / f"{device}.zarr", progress=False)
        summary = run_serial(plan(store), "refsr", device=device, progress=False)
        assert summary.done == 3
        results[device] = np.stack([store.read_result("refsr", t.target) for t in plan(store)]).astype(np.int32)
    assert np.abs(results["cuda"] - results["cpu"]).max() <= 1  # uint8 results: at most one rounding step


def test_dask_gpu_worker_runs_cuda_tasks(tmp_path):
    from conftest import run_cli

    from lfrefsr.distributed import open_client
    from lfrefsr.io.images import write_image
    from lfrefsr.io.ingest import ingest_lf

    hr = make_lightfield(grid=2, size=(64, 64), seed=4)["hr"]
    folder = tmp_path / "src"
    folder.mkdir()
    for u in range(2):
        for v in range(2):
            write_image(folder / f"view_{u:02d}_{v:02d}.png", hr[u, v])
    store = ingest_lf(folder, tmp_path / "s.zarr", progress=False)
    with open_client(None, workers=1, threads_per_worker=1, gpu=True) as client:
        address = client.scheduler.address
        result = run_cli(["reconstruct", store.path, "--method", "refsr", "--device", "cuda", "--scheduler", address,
                          "-q"])
    assert result.exit_code == 0, result.output
    assert "3 views done" in result.output


def _train(tmp_path, network: str, device: str, **options):
    """``lfrefsr train NETWORK`` on a tiny config (tests/test_training.py's) on ``device``, 3 steps, a log row each,
    run folder ``tmp_path / NETWORK``."""
    from conftest import run_cli
    from test_training import TINY_CCNET, _config, _tiny_ssnet_config, _train_tiny_sisr

    extra = [*(["--max-steps", str(options["max_steps"])] if "max_steps" in options else []),
             *(["--resume"] if options.get("resume") else []), "--device", device]
    if network == "sisr":
        return _train_tiny_sisr(tmp_path, "sisr", args=extra, steps=3, log_every=1)
    if network == "ccnet":
        config = _config(tmp_path, {**TINY_CCNET, "train": {**TINY_CCNET["train"], "steps": 3}})
    else:
        config = _tiny_ssnet_config(tmp_path, log_every=1)
    return run_cli(["train", network, "--config", str(config), "--out", str(tmp_path / network), "-q", *extra])


@pytest.mark.parametrize("network", ["ccnet", "sisr", "ssnet"])
def test_training_on_cuda_checkpoints_resumes_on_the_cpu_and_exports(tmp_path, network):
    """``lfrefsr train --device cuda``: the network trains on the GPU (finite losses), its checkpoint resumes on the
    CPU, and the exported weights load where there is no GPU."""
    import csv

    from lfrefsr.weights import load_ccnet, load_network

    first = _train(tmp_path, network, "cuda", max_steps=2)
    assert first.exit_code == 0, first.output
    second = _train(tmp_path, network, "cpu", resume=True)
    assert second.exit_code == 0, second.output
    rows = list(csv.DictReader((tmp_path / network / "log.csv").open()))
    assert [row["step"] for row in rows] == ["1", "2", "3"] and all(np.isfinite(float(r["loss"])) for r in rows)
    weights = tmp_path / network / "weights.pt"
    model = load_ccnet(weights)[0] if network == "ccnet" else load_network(network, weights)[0]
    assert all(p.device.type == "cpu" for p in model.parameters())
