"""Training runs resume, configs are parsed safely, and weights files are checked before use."""

import pickle

import pytest
import torch
import yaml
from conftest import run_cli

from lfrefsr.errors import LfrefsrError

TINY_CCNET = {
    "model": {"name": "ccnet", "width": 0.25, "out_channels": 16, "normalize": True},
    "reference_input": "blurred",
    "pairs": {"size": 64, "scale": 8, "grid": 3, "max_disparity": 1.0, "motion": 0.5, "max_frame_gap": 1,
              "brightness": 0.0, "photos": ["skimage"]},
    "train": {"mode": "dense", "steps": 4, "lr": 1e-3, "window": 16, "log_every": 1, "threads": 1, "seed": 3},
}


def _config(tmp_path, config=TINY_CCNET, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_resumes_and_exports(tmp_path):
    config, out = _config(tmp_path), tmp_path / "run"
    first = run_cli(["train", "ccnet", "--config", str(config), "--out", str(out), "--max-steps", "2", "-q"])
    assert first.exit_code == 0, first.output
    assert (out / "last.pt").exists() and not (out / "weights.pt").exists()
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["step"] == 2
    second = run_cli(["train", "ccnet", "--config", str(config), "--out", str(out), "--resume", "-q"])
    assert second.exit_code == 0, second.output
    steps = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3", "4"]  # continued, not restarted
    from lfrefsr.weights import load_ccnet

    model, reference_input = load_ccnet(out / "weights.pt")
    assert reference_input == "blurred" and model.out_channels == 16


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU (tests/test_gpu.py trains on it)")
def test_training_on_a_gpu_the_machine_lacks_is_one_line_and_no_run(tmp_path):
    out = tmp_path / "run"
    result = run_cli(["train", "ccnet", "--config", str(_config(tmp_path)), "--out", str(out), "--device", "cuda"])
    assert result.exit_code == 2 and "--device cuda" in result.output, result.output
    assert not out.exists()


def test_a_recipe_trains_the_same_weights_every_time_and_through_a_resume(tmp_path):
    """train.seed fixes the initial weights as well as the data stream, so two runs of one config agree bitwise (the
    process's own torch RNG state does not leak in), and a run stopped and resumed ends where an unbroken one does."""
    from lfrefsr.training import trainer

    train = trainer("ccnet")
    config = {**TINY_CCNET, "train": {**TINY_CCNET["train"], "log_every": 2, "checkpoint_minutes": 0}}
    torch.manual_seed(1)
    train(config, tmp_path / "a", progress=False)
    torch.manual_seed(2)
    train(config, tmp_path / "b", progress=False, max_steps=3)
    train(config, tmp_path / "b", progress=False, resume=True)
    a, b = (torch.load(tmp_path / run / "weights.pt", weights_only=True)["state_dict"] for run in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_base_and_malformed_yaml(tmp_path):
    from lfrefsr.training.common import load_config

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(TINY_CCNET))
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain: {steps: 9}\n")
    merged = load_config(tmp_path / "child.yaml")
    assert merged["train"]["steps"] == 9 and merged["train"]["lr"] == 1e-3
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    result = run_cli(["train", "ccnet", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "bad.yaml" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(LfrefsrError, match="malformed YAML"):
        load_config(tmp_path / "evil.yaml")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_weights_are_loaded_safely(tmp_path):
    from lfrefsr.weights import load_ccnet, load_network

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": _Evil(), "model_config": {"name": "ccnet"}}, handle)
    with pytest.raises(LfrefsrError, match="only plain tensors"):
        load_ccnet(evil)
    from lfrefsr.models.srresnet import SRResNetNN

    other = tmp_path / "sisr.pt"
    torch.save({"model_config": {"name": "srresnet", "num_blocks": 1, "features": 8},
                "state_dict": SRResNetNN(num_blocks=1, features=8).state_dict()}, other)
    with pytest.raises(LfrefsrError, match="not 'ccnet'"):
        load_ccnet(other)
    wrong_shape = tmp_path / "wrong.pt"
    torch.save({"model_config": {"name": "srresnet", "num_blocks": 2, "features": 8},
                "state_dict": SRResNetNN(num_blocks=1, features=8).state_dict()}, wrong_shape)
    with pytest.raises(LfrefsrError, match="do not fit"):
        load_network("sisr", wrong_shape)


def _tiny_networks(tmp_path):
    from lfrefsr.models.ccnet import CCNet
    from lfrefsr.models.srresnet import SRResNetNN
    from lfrefsr.training.common import save_checkpoint

    ccnet = {"name": "ccnet", "width": 0.25, "out_channels": 8, "normalize": True, "batch_norm": False}
    sisr = {"name": "srresnet", "scale": 8, "num_blocks": 1, "features": 16}
    save_checkpoint(tmp_path / "ccnet.pt", model_config=ccnet, reference_input="blurred",
                    state_dict=CCNet(**{k: v for k, v in ccnet.items() if k != "name"}).state_dict())
    save_checkpoint(tmp_path / "sisr.pt", model_config=sisr,
                    state_dict=SRResNetNN(**{k: v for k, v in sisr.items() if k != "name"}).state_dict())
    return tmp_path / "ccnet.pt", tmp_path / "sisr.pt"


def _train_tiny_sisr(tmp_path, name: str, args=(), **train):
    """``lfrefsr train sisr`` on the CPU recipe shrunk to one 16-feature block and 2-image batches of 8-px LR crops
    from scikit-image's photographs, ``train`` overriding its train section, ``args`` added to the command; run folder
    ``tmp_path / name``."""
    from lfrefsr.training.common import load_config

    sisr = load_config("pipelines/sisr_cpu.yaml")
    sisr["model"].update(num_blocks=1, features=16)
    sisr["photos"] = ["skimage"]
    sisr["train"].update(batch=2, patch=8, threads=1, **train)
    return run_cli(["train", "sisr", "--config", str(_config(tmp_path, sisr, f"{name}.yaml")), "--out",
                    str(tmp_path / name), "-q", *args])


def test_sisr_training_runs_and_exports(tmp_path):
    from lfrefsr.weights import load_network

    result = _train_tiny_sisr(tmp_path, "sisr_run", steps=2, dead_leaves={"fraction": 0.5, "images": 2})
    assert result.exit_code == 0, result.output
    model, _ = load_network("sisr", tmp_path / "sisr_run" / "weights.pt")
    assert model.scale == 8


def test_sisr_crops_resized_by_the_drawn_factor_and_unchanged_without_one():
    """``train.rescale``: a photograph resized by the drawn factor before cropping shows its content that much
    smaller (a ramp's step per pixel doubles at 0.5); without it the crops are the same as before the option existed
    (no extra random draws), so the shipped recipe's data stays as it was trained on."""
    import numpy as np

    from lfrefsr.training.sisr import random_crops

    ramp = torch.linspace(0, 1, 600)[None, None, :].expand(3, 500, 600).contiguous()  # (3, 500, 600)

    def step(crop: torch.Tensor) -> float:  # the ramp's step per pixel, along whichever axis it runs after rotation
        return max(float(crop.diff(dim=-1).abs().mean()), float(crop.diff(dim=-2).abs().mean())) * 599

    plain = random_crops(np.random.default_rng(0), [ramp], 8, 96)
    halved = random_crops(np.random.default_rng(0), [ramp], 8, 96, rescale=(0.5, 0.5))
    assert all(abs(step(c) - 1) < 0.01 for c in plain) and all(abs(step(c) - 2) < 0.02 for c in halved)
    rng = np.random.default_rng(0)
    expected = []
    for _ in range(8):  # the draws random_crops made before ``rescale``: photo, y, x, flip, rotation
        rng.integers(1)
        y0, x0 = int(rng.integers(500 - 96 + 1)), int(rng.integers(600 - 96 + 1))
        crop = ramp[:, y0 : y0 + 96, x0 : x0 + 96]
        crop = crop.flip(-1) if rng.random() < 0.5 else crop
        expected.append(torch.rot90(crop, int(rng.integers(4)), dims=(-2, -1)))
    torch.testing.assert_close(plain, torch.stack(expected))


def test_sisr_loss_is_chosen_by_name_and_an_unknown_one_refused(tmp_path):
    """``train.loss``: ``mse`` trains (the recipe exports), a name not in ``LOSSES`` is one line, exit 1 (as every
    error the CLI reports), no run."""
    result = _train_tiny_sisr(tmp_path, "mse_run", steps=1, loss="mse")
    assert result.exit_code == 0, result.output
    result = _train_tiny_sisr(tmp_path, "huber_run", steps=1, loss="huber")
    assert result.exit_code == 1 and "train.loss='huber'" in result.output and len(result.output.splitlines()) == 1
    assert not (tmp_path / "huber_run" / "weights.pt").exists()


def test_sisr_dead_leaves_share_each_batch_and_are_the_same_pool_on_resume():
    """``train.dead_leaves``: the pool is drawn from the run's seed (a resumed run crops the same images) and gives
    ``fraction`` of each batch (``test_sisr_training_runs_and_exports`` trains with one)."""
    from lfrefsr.training.sisr import leaf_pool

    photos = [torch.rand(3, 80, 80)]
    pool, crops = leaf_pool({"fraction": 0.5, "images": 3, "size": 40}, photos, 48, 16, seed=3)
    again, _ = leaf_pool({"fraction": 0.5, "images": 3, "size": 40}, photos, 48, 16, seed=3)
    assert crops == 8 and len(pool) == 3 and pool[0].shape == (3, 48, 48)  # never smaller than a crop
    assert all(torch.equal(a, b) for a, b in zip(pool, again, strict=True))
    assert leaf_pool(None, photos, 48, 16, seed=3) == ([], 0)


def _tiny_ssnet_config(tmp_path, config: str = "ssnet_cpu.yaml", **train):
    """``pipelines/<config>`` shrunk to an 8-feature SS-Net on tiny frozen networks (``_tiny_networks``), 64-px pairs
    from scikit-image's photographs and 3 steps, ``train`` overriding its train section -> the config file's path."""
    from lfrefsr.training.common import load_config

    ccnet_weights, sisr_weights = _tiny_networks(tmp_path)
    ssnet = load_config(f"pipelines/{config}")
    ssnet.update(ccnet_weights=str(ccnet_weights), sisr_weights=str(sisr_weights))
    ssnet.pop("init", None)  # the shipped weights a fine-tuning starts from do not fit the tiny network
    ssnet["model"].update(lr_channels=16, features=8)
    ssnet["pairs"].update(size=64, photos=["skimage"])
    ssnet["train"].update(steps=3, batch=2, patch=4, pool=2, refresh_every=2, search_range=16, threads=1, **train)
    return _config(tmp_path, ssnet, "ssnet.yaml")


@pytest.mark.parametrize("config,alignment,channels", [("ssnet_cpu.yaml", "flow", 7),
                                                       ("experiments/ssnet_cpu_refsr_align.yaml", "refsr", 7),
                                                       ("experiments/ssnet_noisy_cpu.yaml", "refsr", 7),
                                                       ("ssnet_paper_cpu.yaml", "ccnet", 3)])
def test_ssnet_training_runs_and_exports(tmp_path, config, alignment, channels):
    from lfrefsr.weights import load_network

    result = run_cli(["train", "ssnet", "--config", str(_tiny_ssnet_config(tmp_path, config)), "--out",
                      str(tmp_path / "ssnet_run"), "-q"])
    assert result.exit_code == 0, result.output
    net, state = load_network("ssnet", tmp_path / "ssnet_run" / "weights.pt")
    assert net.scale == 8 and net.hr_in_channels == channels and state["synthesis"]["alignment"] == alignment


def test_random_lr_cameras_stay_in_their_ranges_and_are_estimated_as_at_inference():
    """train.degrade: each part within its configured range, some pairs clean, and the camera model each pair is
    aligned with is the one lfrefsr.capture finds in it."""
    import numpy as np

    from lfrefsr.training.ssnet import camera_lr, random_degradation

    config = {"clean": 0.2, "psf": [0.2, 1.0], "noise": [0.0, 6.0], "jpeg": [60, 95], "jpeg_p": 0.5}
    rng = np.random.default_rng(0)
    drawn = [random_degradation(rng, config) for _ in range(200)]
    cameras = [d for d in drawn if d is not None]
    assert 20 < len(drawn) - len(cameras) < 60  # clean: 0.2
    assert all(d.psf == 0 or config["psf"][0] <= d.psf <= config["psf"][1] for d in cameras)
    assert all(config["noise"][0] <= d.noise <= config["noise"][1] for d in cameras)
    assert {d.jpeg is None for d in cameras} == {True, False}
    assert random_degradation(rng, None) is None

    from test_protocol import _image

    from lfrefsr import protocol

    target = protocol.to_float(protocol.quantize(_image(192, 192, 1)))
    lr, camera = camera_lr(target, 8, protocol.Degradation(psf=0.6, noise=2.0), rng)
    assert lr.shape == (1, 3, 24, 24) and camera.psf == pytest.approx(0.6, rel=0.15) and 1.0 < camera.noise < 3.0
    clean, camera = camera_lr(target, 8, None, rng)
    assert (camera.psf, camera.noise, camera.jpeg) == (0.0, 0.0, None)
    torch.testing.assert_close(clean[0], protocol.to_float(protocol.make_lr(protocol.quantize(target), 8)))
