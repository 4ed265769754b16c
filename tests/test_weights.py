"""The weights that ship inside the package: present, matching their recorded sha256, loadable safely."""

import pytest

from lfrefsr.errors import LfrefsrError
from lfrefsr.weights import HERE, load_network, manifest, verify


def test_shipped_weights_are_listed_and_their_checksums_match():
    entries = manifest()
    assert {"ccnet", "sisr"} <= set(entries)
    for name, entry in entries.items():
        assert verify(name).name == entry["file"]
        assert entry["config"].startswith("pipelines/") and entry["command"].startswith("lfrefsr train")
        model, _ = load_network("ssnet" if name.startswith("ssnet") else name, shipped=name)
        assert not model.training


def test_a_changed_weights_file_is_refused(tmp_path, monkeypatch):
    import lfrefsr.weights as weights

    copy = tmp_path / "ccnet.pt"
    copy.write_bytes((HERE / manifest()["ccnet"]["file"]).read_bytes() + b"tampered")
    monkeypatch.setattr(weights, "HERE", tmp_path)
    monkeypatch.setattr(weights, "MANIFEST", HERE / "manifest.json")
    with pytest.raises(LfrefsrError, match="sha256"):
        weights.verify("ccnet")


@pytest.mark.parametrize("name", ["sisr", "ssnet"])
def test_networks_load_channels_last_and_give_the_contiguous_result(name):
    import torch

    model, _ = load_network(name, shipped=name)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    plain = load_network(name, shipped=name)[0].to(memory_format=torch.contiguous_format)
    torch.manual_seed(0)
    lr = torch.rand(1, 3, 6, 7)
    with torch.inference_mode():
        if name == "sisr":
            fast, slow = model(lr), plain(lr)
        else:
            features = torch.rand(1, model.mask_coarse.in_channels - model.hr_head.out_channels, 6, 7)
            guide, base = torch.rand(1, model.hr_in_channels, 48, 56), torch.rand(1, 3, 48, 56)
            fast, slow = model(features, guide, base)[0], plain(features, guide, base)[0]
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast.contiguous(), slow, atol=1e-5, rtol=1e-5)


def test_ship_records_the_recipe_as_it_trained(tmp_path, monkeypatch):
    """What ``ship`` writes is what tests/test_recipes.py compares a recipe with: its config with ``base:`` merged."""
    import json
    from pathlib import Path

    from lfrefsr import weights
    from lfrefsr.models.srresnet import SRResNetNN
    from lfrefsr.training.common import load_config, save_checkpoint

    monkeypatch.setattr(weights, "HERE", tmp_path)
    monkeypatch.setattr(weights, "MANIFEST", tmp_path / "manifest.json")
    source = tmp_path / "run" / "weights.pt"
    source.parent.mkdir()
    config = {"name": "srresnet", "scale": 8, "num_blocks": 1, "features": 8}
    save_checkpoint(source, model_config=config, state_dict=SRResNetNN(**{k: v for k, v in config.items()
                                                                         if k != "name"}).state_dict())
    recipe = str(Path(__file__).resolve().parents[1] / "pipelines" / "sisr_cpu.yaml")
    weights.ship("sisr", source, config=recipe, command="lfrefsr train sisr --config pipelines/sisr_cpu.yaml")
    entry = json.loads((tmp_path / "manifest.json").read_text())["sisr"]
    assert entry["trained_config"] == load_config(recipe) and (tmp_path / "sisr.pt").is_file()
