"""Every shipped weight's recipe in ``pipelines/`` reproduces what its manifest entry and its weights file record;
``pipelines/`` holds recipes only, the experiments sit in ``pipelines/experiments/`` with a README naming each."""

import importlib
import re
import shlex
from pathlib import Path

import pytest

from lfrefsr.training import TRAINERS
from lfrefsr.training.common import load_config
from lfrefsr.weights import HERE, load_file, manifest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
EXPERIMENTS = PIPELINES / "experiments"
SHIPPED = sorted(manifest())

# Config keys that cannot change the weights a recipe produces, so a recipe may change them without retraining:
# train_loop reads them only to decide when a checkpoint is written (checkpoint_minutes: the checkpoint reads the
# model, optimiser and RNG states and changes none of them, and --resume restores them exactly) and what the CSV log
# and progress bar show (log_every, log_fields). Every other key -- data, schedule, seed, precision, threads -- is
# compared. Output paths are not config keys (--out is on the command line).
RUN_LOCAL = {("train", "checkpoint_minutes"), ("train", "log_every"), ("train", "log_fields")}


def _without_run_local(config: dict) -> dict:
    return {section: ({k: v for k, v in value.items() if (section, k) not in RUN_LOCAL}
                      if isinstance(value, dict) else value)
            for section, value in config.items()}


def _command(entry: dict) -> tuple[str, str]:
    """(network, config) of the manifest's ``lfrefsr train NETWORK --config FILE --out DIR`` command."""
    words = shlex.split(entry["command"])
    assert words[:2] == ["lfrefsr", "train"] and "--config" in words, entry["command"]
    return words[2], words[words.index("--config") + 1]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_weight_names_its_recipe_at_the_top_of_pipelines(name):
    entry = manifest()[name]
    recipe = ROOT / entry["config"]
    assert recipe.is_file(), entry["config"]
    assert recipe.parent == PIPELINES and recipe.suffix == ".yaml"  # a recipe, not an experiment
    network, config = _command(entry)
    assert config == entry["config"] and network in TRAINERS
    # the recipe's header gives the command that made the weights
    assert f"lfrefsr train {network} --config {entry['config']}" in recipe.read_text()


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_reproduces_the_config_the_weights_were_trained_with(name):
    """The manifest's ``trained_config`` is the resolved recipe (``base:`` merged) as it stood when the weights
    shipped; the recipe today must give the same config, key by key, but for the run-local keys above."""
    entry = manifest()[name]
    recipe, trained = load_config(ROOT / entry["config"]), entry["trained_config"]
    recipe, trained = _without_run_local(recipe), _without_run_local(trained)
    assert sorted(recipe) == sorted(trained)
    for section in trained:
        if isinstance(trained[section], dict):
            assert sorted(recipe[section]) == sorted(trained[section]), section
            for key, value in trained[section].items():
                assert recipe[section][key] == value, f"{entry['config']}: {section}.{key}"
        else:
            assert recipe[section] == trained[section], f"{entry['config']}: {section}"


@pytest.mark.parametrize("name", SHIPPED)
def test_recipe_reproduces_what_the_weights_file_records(name):
    """What the trainer's export would write of the recipe (model config, CC-Net's reference input, SS-Net's synthesis
    settings) is what the shipped file holds; its steps are the recipe's and the manifest's."""
    entry = manifest()[name]
    network, _ = _command(entry)
    recipe = load_config(ROOT / entry["config"])
    state = load_file(HERE / entry["file"])
    record = importlib.import_module(TRAINERS.get(network).__module__).weights_record(recipe)
    assert set(state) == {*record, "state_dict", "meta"}
    for key, value in record.items():
        assert state[key] == value, f"{entry['config']} against {entry['file']}: {key}"
    assert state["meta"] == entry["meta"]
    assert state["meta"]["steps"] == recipe["train"]["steps"]


def test_pipelines_top_level_holds_recipes_only():
    shipped = {manifest()[name]["config"] for name in SHIPPED}
    for path in sorted(PIPELINES.glob("*.yaml")):
        assert "EXPERIMENT" not in path.read_text(), f"{path.name} is marked as an experiment: move it to experiments/"
        # a shipped weight's recipe, or the paper's configuration of a network
        assert f"pipelines/{path.name}" in shipped or path.stem.endswith("_paper"), path.name
        load_config(path)  # its base: chain resolves


def test_experiments_are_marked_and_listed_in_their_readme():
    readme = (EXPERIMENTS / "README.md").read_text()
    files = sorted(p.name for p in EXPERIMENTS.iterdir() if p.name != "README.md")
    assert files
    for name in files:
        assert f"`{name}`" in readme, f"pipelines/experiments/README.md does not name {name}"
    for path in EXPERIMENTS.glob("*.yaml"):
        assert path.read_text().startswith("# EXPERIMENT"), path.name
        load_config(path)  # its base: chain resolves from the new folder
    listed = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    assert listed == set(files)  # and the README lists no file that is gone
