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
