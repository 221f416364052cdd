"""The fast config check: the schema cache rebuilds every registered learner's and dataset's
settings as they are, and a config checked against it fails with the full check's own error,
before torch is imported; a stale or corrupt cache is never used."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from enum import Enum
from pathlib import Path

import pytest

from metarec.catalog import DATASETS, LEARNERS
from metarec.config import schema_cache
from metarec.config.domain import Range, setting
from metarec.config.experiments import check_experiments
from metarec.config.load import load_config
from metarec.config.schema import LearnerConfig
from metarec.config.schema_cache import (
    TRAITS,
    Cached,
    Undecided,
    cache_file,
    current_fingerprint,
    fingerprint,
    read_registries,
    write_cache,
)
from metarec.config.settings_json import describe, rebuild
from metarec.errors import ConfigError
from metarec.registry import Registry
from metarec.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
MAML = "experiments/synthetic/maml.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A schema cache of the complete registries, in ``tmp_path``, under a fixed fingerprint
    (an edit of the source tree while the tests run leaves it valid)."""
    monkeypatch.setenv("METAREC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(schema_cache, "current_fingerprint", lambda plugins: "fixed")
    write_cache([], LEARNERS, DATASETS, "fixed")
    return tmp_path


@pytest.fixture
def warm(tmp_path, monkeypatch):
    """A schema cache in ``tmp_path`` that another process finds valid."""
    monkeypatch.setenv("METAREC_CACHE_DIR", str(tmp_path))
    write_cache([], LEARNERS, DATASETS, current_fingerprint([]))
    return {**os.environ, "METAREC_CACHE_DIR": str(tmp_path)}


def full_error(path, overrides) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    return str(caught.value)


def same_settings(real: type, rebuilt: type, where: str) -> None:
    """Field by field: names, types, defaults, help, choices, domains; nested sections too."""
    assert rebuilt.__name__ == real.__name__ and rebuilt.__qualname__ == real.__qualname__
    assert rebuilt.__dataclass_params__.__repr__() == real.__dataclass_params__.__repr__()
    real_hints, rebuilt_hints = typing.get_type_hints(real), typing.get_type_hints(rebuilt)
    real_fields, rebuilt_fields = dataclasses.fields(real), dataclasses.fields(rebuilt)
    assert [f.name for f in rebuilt_fields] == [f.name for f in real_fields], where
    for mine, theirs in zip(rebuilt_fields, real_fields, strict=True):
        key = f"{where}.{theirs.name}"
        assert dict(mine.metadata) == dict(theirs.metadata), key
        real_type, rebuilt_type = real_hints[theirs.name], rebuilt_hints[mine.name]
        light = real_type.__module__.startswith("metarec.config.")
        if dataclasses.is_dataclass(real_type) and light:
            assert rebuilt_type is real_type, key
        elif dataclasses.is_dataclass(real_type):
            same_settings(real_type, rebuilt_type, key)
        else:
            assert rebuilt_type == real_type, key
            assert type(rebuilt_type) is type(real_type), key  # Union[...] and a | b print apart
        assert repr(mine.default) == repr(theirs.default), key
        has_factory = mine.default_factory is not dataclasses.MISSING
        assert has_factory == (theirs.default_factory is not dataclasses.MISSING), key
        if has_factory:
            assert repr(mine.default_factory()) == repr(theirs.default_factory()), key
    assert repr(rebuilt()) == repr(real()), where  # every default, nested ones included
    owner = next((k for k in real.__mro__ if "__post_init__" in vars(k)), None)
    if owner is None or owner.__module__.startswith("metarec.config."):
        assert getattr(rebuilt, "__post_init__", None) is getattr(real, "__post_init__", None)
    else:  # a check in the entry's own module: the rebuilt class stands in for it
        assert "__post_init__" in vars(rebuilt), where


ENTRIES = [(LEARNERS, name) for name in LEARNERS.names()]
ENTRIES += [(DATASETS, name) for name in DATASETS.names()]


@pytest.mark.parametrize(("registry", "name"), ENTRIES, ids=[f"{r.kind}-{n}" for r, n in ENTRIES])
def test_rebuilt_settings_equal_the_registered_ones(registry, name):
    described = json.loads(json.dumps(describe(registry.get(name).Settings)))
    same_settings(registry.get(name).Settings, rebuild(described, print), f"{registry.kind} {name}")


@pytest.mark.parametrize("registry", [LEARNERS, DATASETS], ids=["learners", "datasets"])
def test_cached_registries_hold_every_entry_and_its_traits(cache, registry):
    learners, datasets = read_registries([], print)
    cached = {"learner": learners, "dataset": datasets}[registry.kind]
    assert cached.names() == registry.names()
    for entry in registry.names():
        for trait in TRAITS[registry.kind]:
            assert getattr(cached.get(entry), trait) == getattr(registry.get(entry), trait)


BAD = [
    ["learner.inner_stepz=3"],  # a key the learner does not have
    ["learner.inner_steps=abc"],  # a value of the wrong type
    ["learner.inner_steps=-1"],  # outside its domain
    ["learner.adapt=some"],  # not one of its choices
    ["learner.outer_lr=inf"],
    ["learner.name=nope"],
    ["data.name=nope"],
    ["data.synthetic.n_userz=3"],
    ["data.synthetic.n_users=0"],
    ["data.min_ratings=50", "data.max_ratings=40"],  # DataConfig's own check across settings
    ["task.warm=[warmup,seen]"],
    ["learner.name=aldi", "task.unit=item"],  # what the learner supports
    ["learner.name=mean", "item.text=join"],
    ["learner.name=textsim"],
    ["trainer.devices=3"],
    ["trainer.limit_train_batches=0"],
    ["learner.name=attention", "learner.heads=0"],
    ["data.name=csv", "data.csv.ratingz=x"],
    ["foo"],
    ["name=${nope}"],  # an interpolation of nothing
]


@pytest.mark.parametrize("overrides", BAD, ids=[" ".join(o) for o in BAD])
def test_the_cache_gives_the_full_checks_error(cache, overrides):
    catalog = Cached()
    with pytest.raises(ConfigError) as caught:
        load_config(MAML, overrides, catalog)
    assert str(caught.value) == full_error(MAML, overrides)
    assert catalog.skipped == []


def test_every_experiment_file_loads_alike(cache):
    for path in sorted((ROOT / "experiments").glob("*/*.yaml")):
        if path.parent.name == "sweeps" or path.name == "base.yaml":
            continue
        assert repr(load_config(path, [], Cached())) == repr(load_config(path)), path


@pytest.mark.parametrize(
    "overrides",
    [
        ["data.synthetic.min_ratings=50", "data.synthetic.max_ratings=40"],
        ["learner.name=attention", "learner.heads=3"],  # must divide d_model
        ["learner.name=mean", "learner.kind=global", "learner.item_pseudo=3"],
    ],
)
def test_a_check_only_code_can_run_is_left_to_the_full_check(cache, overrides):
    catalog = Cached()
    load_config(MAML, overrides, catalog)  # passes: the full check decides
    assert catalog.skipped
    full_error(MAML, overrides)
    catalog = Cached()
    chosen = [item for item in overrides if item.startswith("learner.name=")]
    load_config(MAML, chosen, catalog)  # values the catalog passed (the defaults) pass
    assert catalog.skipped == []


def test_a_sweeps_bad_setting_is_the_full_checks_error(cache):
    sweep = "experiments/sweeps/maml_inner_synthetic.yaml"
    for extra in (["learner.inner_stepz=3"], ["learner.outer_lr=-1"]):
        with pytest.raises(ConfigError) as fast:
            load_sweep(sweep, extra, Cached())
        with pytest.raises(ConfigError) as full:
            load_sweep(sweep, extra)
        assert str(fast.value) == str(full.value)
    load_sweep(sweep, [], Cached())


def python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``code`` run by a fresh Python in the checkout."""
    command = [sys.executable, "-c", "import sys\n" + code]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``metarec ARGS`` in a fresh process; prints whether torch was imported, then exits."""
    code = f"from metarec.cli import main\ncode = main({args!r})\n"
    return python(code + "print('torch imported:', 'torch' in sys.modules)\nsys.exit(code)", env)


def test_the_modules_a_config_check_runs_import_no_torch():
    light = "metarec metarec.cli metarec.config.load metarec.config.schema metarec.config.domain"
    light += " metarec.errors metarec.sweep.spec metarec.config.schema_cache metarec.paths"
    light += " metarec.config.experiments"
    heavy = ["torch", "lightning", "transformers", "peft", "metarec.catalog"]
    code = f"import importlib\nfor m in {light.split()!r}: importlib.import_module(m)\n"
    assert python(code + f"print([m for m in {heavy!r} if m in sys.modules])").stdout == "[]\n"


def test_a_bad_config_fails_before_torch_is_imported(warm):
    for overrides in (["learner.inner_stepz=3"], ["learner.inner_steps=-1"]):
        done = run_cli(["train", MAML, *overrides], warm)
        assert done.returncode == 2
        assert done.stderr == f"metarec: error: {full_error(MAML, overrides)}\n"
        assert done.stdout == "torch imported: False\n"


def test_a_bad_setting_of_a_reproduction_or_leaderboard_fails_before_torch(warm):
    """Every experiment file is checked with the ``--set`` settings: the first bad one is the
    full check's error (``check_experiments``, which ``reproduce`` and ``leaderboard`` run
    first), told without importing torch."""
    commands = {
        ("reproduce", "synthetic", "--set", "learner.inner_stepz=3"): "learner.inner_stepz=3",
        ("leaderboard", "--datasets", "synthetic,melu-ml1m", "--methods", "maml", "--set",
         "trainer.max_epochz=2"): "trainer.max_epochz=2",
    }  # fmt: skip
    for args, bad in commands.items():
        datasets = ["synthetic", "melu-ml1m"] if args[0] == "leaderboard" else ["synthetic"]
        methods = ["maml"] if "--methods" in args else None
        with pytest.raises(ConfigError) as caught:
            check_experiments(datasets, methods, [bad])
        done = run_cli(list(args), warm)
        assert done.returncode == 2
        assert done.stderr == f"metarec: error: {caught.value}\n"
        assert done.stdout == "torch imported: False\n"
        # reproduce: the first file in name order (aldi.yaml) fails first; its learner lacks it
        assert ("synthetic/aldi.yaml" in done.stderr) == (args[0] == "reproduce")


def test_a_good_config_passes_the_fast_check_without_torch(warm):
    args = ["train", MAML, "learner.inner_steps=2"]
    code = "from metarec.cli import build_parser\nfrom metarec.cli_fast import fast_check\n"
    code += f"print(fast_check(build_parser().parse_args({args!r})), 'torch' in sys.modules)"
    done = python(code, warm)
    assert done.stdout == "passed False\n", done.stderr


def test_a_corrupt_cache_falls_back_to_the_full_check_which_rewrites_it(tmp_path):
    env = {**os.environ, "METAREC_CACHE_DIR": str(tmp_path)}
    (tmp_path / "schemas").mkdir()
    path = tmp_path / "schemas" / cache_file([]).name
    path.write_text('{"format": 1, "fingerprint": ')
    done = run_cli(["train", MAML, "learner.inner_stepz=3"], env)
    assert done.returncode == 2
    assert done.stderr == f"metarec: error: {full_error(MAML, ['learner.inner_stepz=3'])}\n"
    assert done.stdout == "torch imported: True\n"  # the full check ran
    assert json.loads(path.read_text())["fingerprint"] == current_fingerprint([])


def test_the_fingerprint_follows_sources_version_entry_points_and_plugins(tmp_path):
    package = tmp_path / "pkg"
    (package / "learners").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    source = package / "learners" / "mine.py"
    source.write_text("x = 1\n")
    (package / "notes.txt").write_text("not a source")
    points = [("metarec.learners", "mine", "mine:Mine")]

    def now(**changed) -> str:
        args = {"package": package, "plugins": [], "points": points, "version": "0.1.0"}
        return fingerprint(**{**args, **changed})

    first = now()
    assert now() == first
    (package / "notes.txt").write_text("still not a source, now longer")
    assert now() == first
    assert now(plugins=["mine_plugin"]) != first
    assert now(points=[]) != first
    assert now(version="0.2.0") != first
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # touched
    touched = now()
    assert touched != first
    (package / "learners" / "other.py").write_text("")
    assert now() != touched


def test_a_stale_cache_is_not_used(cache, monkeypatch):
    assert read_registries([], print) is not None
    assert read_registries(["json"], print) is None  # another plugin list: no file yet
    data = json.loads(cache_file([]).read_text())
    plugin = cache / "myplugin.py"
    plugin.write_text("")
    data["files"].append([str(plugin), 0, plugin.stat().st_mtime_ns])
    cache_file([]).write_text(json.dumps(data))
    assert read_registries([], print) is not None
    plugin.write_text("# edited")  # a plugin's source changed
    assert read_registries([], print) is None
    monkeypatch.setattr(schema_cache, "current_fingerprint", lambda plugins: "another")
    write_cache([], LEARNERS, DATASETS, "before")  # written under an older fingerprint
    with pytest.raises(Undecided):
        load_config(MAML, ["learner.inner_stepz=3"], Cached())


Mode = Enum("Mode", "FAST")


@dataclasses.dataclass
class EnumSettings(LearnerConfig):
    mode: Mode = setting(Mode.FAST, "a type JSON does not describe")
    rate: float = setting(0.1, "in range", domain=Range(0, 1))


def test_settings_json_cannot_say_are_left_to_the_full_check(cache):
    learners, datasets = Registry("learner"), Registry("dataset")
    traits = {"units": ("user",), "reads_item_text": True, "needs_item_text": False}
    learners.register("enum")(type("EnumLearner", (), {"Settings": EnumSettings, **traits}))
    datasets.register("synthetic")(DATASETS.get("synthetic"))
    write_cache([], learners, datasets, "fixed")
    cached_learners, _ = read_registries([], print)
    assert cached_learners.names() == ["enum"]
    with pytest.raises(Undecided):
        cached_learners.get("enum").Settings  # noqa: B018
