"""Set-up files agree with each other: README's two commands, .ci/run, setup.cfg and environment.yml."""

import configparser
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# setup.cfg distribution names -> conda-forge names where they differ
CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "opencv", "dask[distributed]": "dask"}


def _setup_requirements() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    names = set()
    for section, key in (("options", "install_requires"), ("options.extras_require", "test")):
        for line in config[section][key].strip().splitlines():
            name = re.split(r"[<>=!~ ]", line.strip())[0].lower()
            names.add(CONDA_NAMES.get(name, name))
    return names


def test_environment_names_the_same_dependencies_as_setup_cfg():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {re.split(r"[<>=! ]", dep)[0].lower() for dep in env["dependencies"] if isinstance(dep, str)}
    conda -= {"python", "pip", "distributed"}
    assert conda == _setup_requirements()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```")[1]
    commands = [line for line in block.splitlines()[1:] if line.strip()]
    assert len(commands) == 2
    assert "lfrefsr demo" in commands[0] and "pytest" in commands[1]
    assert all("torch==" in c for c in commands), "a loose torch requirement pulls a multi-GB CUDA build"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
