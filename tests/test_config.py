"""Tests for loading a run config: defaults, YAML file, key=value overrides and their errors."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from metarec.catalog import LEARNERS
from metarec.config.load import (
    BASE_FILE,
    builtin_experiments,
    experiment_files,
    load_config,
    read_experiment,
    to_yaml,
)
from metarec.config.schema import DEFAULT_LEARNER, LearnerConfig, ModelConfig, RunConfig
from metarec.datasets.synthetic import SyntheticSettings
from metarec.errors import ConfigError
from metarec.learners.maml import MAMLSettings
from metarec.reproduce.leaderboard import COVERAGE_FILE

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_file_no_overrides_gives_the_schema_defaults():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    # The learner section is typed by the default learner's own Settings dataclass.
    assert cfg == dataclasses.replace(
        RunConfig(), name="synthetic-maml", data=SyntheticSettings(), learner=MAMLSettings()
    )
    # Nested sections come back as their dataclasses, not as dicts or DictConfigs.
    assert isinstance(cfg.learner, LearnerConfig)
    assert isinstance(cfg.model, ModelConfig)
    assert type(cfg.model.hidden) is list
    assert cfg.learner.name == LearnerConfig().name == DEFAULT_LEARNER


def test_list_defaults_are_not_shared_between_instances():
    first, second = RunConfig(), RunConfig()
    first.model.hidden.append(7)
    assert first.model.hidden == [64, 64, 7]
    assert second.model.hidden == [64, 64]
    assert ModelConfig().hidden == [64, 64]


def test_file_values_override_defaults_and_keep_the_rest(tmp_path):
    path = write(
        tmp_path,
        "name: from-file\nlearner:\n  inner_steps: 2\n  first_order: true\n"
        "data:\n  synthetic:\n    n_users: 77\n",
    )
    cfg = load_config(path)
    defaults = load_config()
    assert cfg.name == "from-file"
    assert cfg.learner.inner_steps == 2
    assert cfg.learner.first_order is True
    assert cfg.data.synthetic.n_users == 77
    # Untouched siblings keep their defaults.
    assert cfg.learner.inner_lr == defaults.learner.inner_lr
    assert cfg.data.synthetic.n_items == defaults.data.synthetic.n_items
    assert cfg.trainer == defaults.trainer


def test_overrides_apply_after_the_file(tmp_path):
    path = write(tmp_path, "name: from-file\nlearner:\n  inner_steps: 2\n  inner_lr: 0.5\n")
    cfg = load_config(path, ["learner.inner_steps=3", "model.hidden=[32,16]", "seed=9"])
    assert cfg.learner.inner_steps == 3  # override beats the file
    assert cfg.learner.inner_lr == 0.5  # file value not overridden stays
    assert cfg.name == "from-file"
    assert cfg.model.hidden == [32, 16]
    assert cfg.seed == 9


def test_later_overrides_win_over_earlier_ones():
    cfg = load_config(None, ["learner.inner_steps=3", "learner.inner_steps=4"])
    assert cfg.learner.inner_steps == 4


def test_override_values_are_converted_to_the_field_type():
    cfg = load_config(None, ["learner.outer_lr=1", "trainer.gradient_clip_val=0.5"])
    assert cfg.learner.outer_lr == 1.0 and isinstance(cfg.learner.outer_lr, float)
    assert cfg.trainer.gradient_clip_val == 0.5


def test_unknown_key_in_file_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "learner:\n  bogus_setting: 1\n", name="bad_key.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "bogus_setting" in message
    assert str(path) in message


def test_wrong_type_in_file_names_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "learner:\n  inner_steps: many\n", name="bad_type.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "learner.inner_steps" in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("override", ["learner.bogus_setting=1", "bogus_top=3"])
def test_unknown_override_key_names_the_key(override):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert override.split("=")[0].split(".")[-1] in str(info.value)


def test_wrong_override_type_names_the_key():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["learner.inner_steps=abc"])
    assert "learner.inner_steps" in str(info.value)


def test_wrong_list_element_type_is_an_error():
    with pytest.raises(ConfigError, match="model.hidden"):
        load_config(None, ["model.hidden=[a,b]"])


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="learner.inner_steps"):
        load_config(None, ["learner.inner_steps"])


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "does_not_exist.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_an_error(tmp_path, text):
    path = write(tmp_path, text, name="not_mapping.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = write(tmp_path, "learner: [unclosed\n", name="broken.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("learner.adapt=some", "learner.adapt"),
        ("data.name=foo", "data.name"),
        ("trainer.accelerator=tpu-pod", "trainer.accelerator"),
    ],
)
def test_value_outside_the_choices_names_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert key in str(info.value)


def test_value_outside_the_choices_in_a_file_is_an_error(tmp_path):
    path = write(tmp_path, "data:\n  name: foo\n")
    with pytest.raises(ConfigError, match="data.name"):
        load_config(path)


@pytest.mark.parametrize("override", ["learner.adapt=decision", "data.name=melu-ml1m"])
def test_values_inside_the_choices_are_accepted(override):
    key, value = override.split("=")
    section, name = key.split(".")
    assert getattr(getattr(load_config(None, [override]), section), name) == value


def test_to_yaml_round_trips_through_a_file(tmp_path):
    cfg = load_config(
        None,
        [
            "name='007'",  # quoted: looks like a number, must stay a string
            "output_dir='yes'",  # quoted: looks like a YAML 1.1 bool
            "trainer.precision=16",
            "data.root=/some/where",
            "model.hidden=[8,4,2]",
            "learner.adapt=decision",
            "learner.first_order=true",
            "trainer.gradient_clip_val=0.25",
            "data.synthetic.noise=0.7",
        ],
    )
    assert cfg.name == "007" and cfg.output_dir == "yes" and cfg.trainer.precision == "16"
    path = write(tmp_path, to_yaml(cfg), name="round_trip.yaml")
    again = load_config(path)
    assert again == cfg
    assert dataclasses.asdict(again) == dataclasses.asdict(cfg)


def test_to_yaml_of_defaults_round_trips(tmp_path):
    path = write(tmp_path, to_yaml(load_config()))
    assert load_config(path) == load_config()


def yaml_files() -> list[Path]:
    return sorted(
        path
        for pattern in ("*.yaml", "*.yml")
        for path in EXPERIMENTS.rglob(pattern)
        if "sweeps" not in path.relative_to(EXPERIMENTS).parts and path.name != COVERAGE_FILE
    )


def test_there_are_experiment_files():
    assert yaml_files(), f"no YAML found under {EXPERIMENTS}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(EXPERIMENTS)))
def test_every_experiment_file_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["learner.name=attention", "learner.heads=3"], "learner.heads"),
        (["learner.name=protonet", "learner.temperature=0"], "learner.temperature"),
        (["learner.name=reptile", "learner.first_order=false"], "learner.first_order"),
    ],
)
def test_learner_settings_that_depend_on_each_other_fail_at_load(overrides, named):
    with pytest.raises(ConfigError, match=named):
        load_config(None, overrides)


# -- a dataset folder's base.yaml ---------------------------------------------------------------


def test_a_folders_base_yaml_sits_between_the_defaults_and_the_file(tmp_path):
    write(tmp_path, "name: base\nseed: 3\nlearner:\n  outer_lr: 0.5\ntrainer:\n  max_epochs: 7\n",
          name=BASE_FILE)  # fmt: skip
    path = write(tmp_path, "name: row\nlearner:\n  name: reptile\ntrainer:\n  max_epochs: 2\n")
    cfg = load_config(path, ["seed=4"])
    assert (cfg.name, cfg.trainer.max_epochs) == ("row", 2)  # the file beats base.yaml
    assert cfg.learner.name == "reptile" and cfg.learner.outer_lr == 0.5  # base.yaml's kept
    assert cfg.seed == 4  # an override beats both
    assert load_config(tmp_path / BASE_FILE).name == "base"  # loads alone, merged once
    assert read_experiment(path) == {
        "name": "row", "seed": 3, "learner": {"outer_lr": 0.5, "name": "reptile"},
        "trainer": {"max_epochs": 2},
    }  # fmt: skip


def test_a_file_without_a_base_yaml_beside_it_is_read_alone(tmp_path):
    path = write(tmp_path, "name: alone\n")
    assert load_config(path) == dataclasses.replace(load_config(), name="alone")


def test_a_bad_key_in_base_yaml_names_base_yaml(tmp_path):
    write(tmp_path, "trainer:\n  max_epochz: 7\n", name=BASE_FILE)
    with pytest.raises(ConfigError, match=r"base\.yaml.*max_epochz"):
        load_config(write(tmp_path, "name: row\n"))


def test_base_yaml_is_no_experiment_of_its_own(tmp_path):
    write(tmp_path, "name: base\n", name=BASE_FILE)
    write(tmp_path, "name: row\n")
    assert experiment_files(tmp_path) == [tmp_path / "run.yaml"]
    assert not [name for name in builtin_experiments() if name.endswith("/base")]


def experiment_folders() -> list[Path]:
    return sorted(path.parent for path in EXPERIMENTS.glob(f"*/{BASE_FILE}"))


@pytest.mark.parametrize("folder", experiment_folders(), ids=lambda folder: folder.name)
def test_experiment_files_hold_only_deltas_from_their_base_yaml(folder):
    """A value repeated from base.yaml would be a setting with two homes."""

    def flat(node, prefix=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flat(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    base = dict(flat(yaml.safe_load((folder / BASE_FILE).read_text())))
    for path in experiment_files(folder):
        repeated = [key for key, value in flat(yaml.safe_load(path.read_text()) or {})
                    if key in base and base[key] == value]  # fmt: skip
        assert not repeated, f"{path.name} repeats {repeated} from {BASE_FILE}"


# -- what the chosen learner supports, checked at load --------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["learner.name=textsim", "item.text=replace", "task.unit=item"], "task.unit"),
        (["learner.name=mean", "item.text=join"], "item.text"),
        (["learner.name=mf", "item.text=replace"], "item.text"),
        (["trainer.devices=3"], "learner.meta_batch_size"),
        (["learner.meta_batch_size=30", "trainer.num_nodes=4"], "learner.meta_batch_size"),
    ],
)
def test_a_setting_the_learner_cannot_run_with_fails_at_load(overrides, key):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        load_config(None, overrides)


def test_a_setting_the_learner_cannot_run_with_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, "task:\n  unit: item\nitem:\n  text: join\nlearner:\n  name: textsim\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path))}.*key 'task.unit'"):
        load_config(path)


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.devices=2", "trainer.num_nodes=2"],  # 32 tasks, 8 a process
        ["trainer.devices=-1", "learner.meta_batch_size=7"],  # Lightning counts the devices
        ["learner.name=mean"],
        ["learner.name=textsim", "item.text=join"],
        ["task.unit=item", "learner.name=maml"],
    ],
)
def test_settings_the_learner_can_run_with_load(overrides):
    load_config(None, overrides)


def test_a_learner_that_needs_item_text_refuses_none_at_load():
    maml = LEARNERS.get("maml")
    LEARNERS.register("needs-text")(type("NeedsText", (maml,), {"needs_item_text": True}))
    try:
        with pytest.raises(ConfigError, match="key 'item.text'.*needs-text"):
            load_config(None, ["learner.name=needs-text"])
        assert load_config(None, ["learner.name=needs-text", "item.text=join"])
    finally:
        LEARNERS.unregister("needs-text")
