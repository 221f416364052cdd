"""What a wheel needs beyond the modules: the experiment files by name, LICENSE, CITATION.cff.

Building and installing the wheel itself is ``make wheel-check`` (CI), not a unit test."""

import configparser
from pathlib import Path

import pytest
import yaml

import metarec
from metarec import paths
from metarec.config.load import builtin_experiments, load_config, resolve_experiment
from metarec.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_experiments_root_finds_every_dataset_folder_and_the_sweeps():
    root = paths.experiments_root()
    folders = {path.name for path in (REPO / "experiments").iterdir() if path.is_dir()}
    assert {"synthetic", "melu_ml1m", "sweeps"} <= folders
    assert {path.name for path in root.iterdir() if path.is_dir()} == folders
    for folder in folders:
        assert list((root / folder).glob("*.yaml")), f"no experiment files in {root / folder}"


def test_the_packaged_copy_comes_first_and_a_missing_one_is_named(tmp_path, monkeypatch):
    packaged = tmp_path / "site-packages" / "metarec" / "experiments"
    (packaged / "synthetic").mkdir(parents=True)
    monkeypatch.setattr(paths, "PACKAGED", packaged)
    assert paths.experiments_root() == packaged  # an installed wheel's, not a checkout's
    monkeypatch.setattr(paths, "PACKAGED", tmp_path / "none")
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="none.*nothing"):
        paths.experiments_root()


@pytest.mark.parametrize(
    "name",
    [
        "synthetic/maml",
        "maml",
        "maml.yaml",
        "synthetic/maml.yaml",
        "experiments/synthetic/maml.yaml",
    ],
)
def test_built_in_names_resolve_outside_a_checkout(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no experiments/ here
    path = resolve_experiment(name)
    assert path == paths.experiments_root() / "synthetic" / "maml.yaml"
    assert load_config(name, ["trainer.max_epochs=1"]).name == "synthetic-maml"


def test_a_dataset_name_with_a_dash_names_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_experiment("melu-ml1m/maml") == builtin_experiments()["melu_ml1m/maml"]


def test_a_real_file_wins_over_a_built_in_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "maml.yaml").write_text("name: mine\n")
    assert resolve_experiment("synthetic/maml.yaml") == Path("synthetic/maml.yaml")
    assert load_config("synthetic/maml.yaml").name == "mine"


@pytest.mark.parametrize("name", ["nope", "synthetic/nope", "experiments/synthetic/nope.yaml"])
def test_an_unknown_name_lists_the_built_in_ones(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(name)
    message = str(caught.value)
    assert message.startswith(f"config file not found: {name}")
    assert "synthetic/{" in message and "melu_ml1m/{" in message and "sweeps" not in message
    assert all(key.split("/")[1] in message for key in builtin_experiments())
    assert "\n" not in message  # the CLI prints it as one line


def test_license_and_citation_match_setup_cfg():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert setup["metadata"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["license"] == "MIT"
    assert citation["version"] == setup["metadata"]["version"] == metarec.__version__
