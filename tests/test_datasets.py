"""The dataset registry, published splits as data (metarec/data/split.py), run names, and
learners and datasets plugged in from outside the package."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metarec.catalog import DATASETS, LEARNERS, load_dataset
from metarec.config.load import load_config
from metarec.config.schema import DataConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import STATES
from metarec.data.split import Placed, states_from_rows
from metarec.errors import ConfigError, DataError

SPLIT_STATES = ("warm", "new_user", "new_item", "new_user_item")


def write_split_data(root: Path, seed: int = 0, roles: bool = False) -> dict:
    """Ratings of 60 users x 40 items and a split file placing each user in one user state and
    each item in one item state (with ``roles``, every third rating of a user in a state is a
    query, and a user's lone rating in a state is left out); returns
    ``{(user, item): (state, rating, query)}``."""
    rng = np.random.default_rng(seed)
    new_users = {f"u{u}" for u in range(60) if u % 4 == 0}
    new_items = {f"i{i}" for i in range(40) if i % 5 == 0}
    groups: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for u in range(60):
        user = f"u{u}"
        for i in rng.choice(40, size=int(rng.integers(24, 36)), replace=False).tolist():
            item = f"i{i}"
            new = (user in new_users, item in new_items)
            state = {
                (False, False): "warm",
                (True, False): "new_user",
                (False, True): "new_item",
                (True, True): "new_user_item",
            }[new]
            groups.setdefault((user, state), []).append((item, float(rng.integers(1, 6))))
    placed = {}
    for (user, state), rated in groups.items():
        if roles and len(rated) < 2:
            continue
        for index, (item, rating) in enumerate(rated):
            placed[user, item] = (state, rating, index % 3 == 1 if roles else None)
    ratings = ["user,item,rating"] + [f"{u},{i},{r:g}" for (u, i), (_, r, _) in placed.items()]
    split = ["user,item,state" + (",role" if roles else "")] + [
        f"{u},{i},{state}" + ((",query" if query else ",support") if roles else "")
        for (u, i), (state, _, query) in placed.items()
    ]
    (root / "ratings.csv").write_text("\n".join(ratings) + "\n")
    (root / "split.csv").write_text("\n".join(split) + "\n")
    return placed


def split_config(root: Path, *overrides: str):
    return load_config(
        None,
        [
            "data.name=csv",
            f"data.root={root}",
            "data.csv.split=split.csv",
            "data.csv.new_items=id",
            "data.min_ratings=3",
            "data.query_size=2",
            *overrides,
        ],
    )


def test_split_round_trips_every_rating_into_its_state(tmp_path):
    placed = write_split_data(tmp_path)
    cfg = split_config(tmp_path)
    dataset = load_dataset(cfg.data)
    loaded = {}
    for state, users in dataset.states.items():
        for user in users:
            for item, rating in zip(user.items, user.ratings.tolist(), strict=True):
                loaded[user.user, item] = (state, rating)
    name_of = dict(zip(STATES, SPLIT_STATES, strict=True))
    assert {key: (name_of[s], r) for key, (s, r) in loaded.items()} == {
        key: (state, rating) for key, (state, rating, _) in placed.items()
    }
    # Task counts: every user with at least min_ratings ratings in a state is one task there.
    tasks = ColdStartTasks(dataset, cfg.data, cfg.task)
    for scenario in ("new_user", "new_item", "new_user_item"):
        counts: dict[str, int] = {}
        for (user, _), (state, _, _) in placed.items():
            if state == scenario:
                counts[user] = counts.get(user, 0) + 1
        expected = sum(1 for n in counts.values() if 3 <= n <= cfg.data.max_ratings)
        assert len(tasks.test[scenario]) == expected


def test_fixed_split_data_seeds_vary_only_the_query_draws(tmp_path, caplog):
    write_split_data(tmp_path)
    by_seed = {}
    for seed in (0, 1):
        cfg = split_config(tmp_path, f"data.seed={seed}")
        with caplog.at_level(logging.WARNING):
            by_seed[seed] = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    assert "draws only the query ratings" in caplog.text  # the seed-1 run says so
    for scenario in ("new_user", "new_item", "new_user_item"):
        one, two = by_seed[0].test[scenario], by_seed[1].test[scenario]
        assert one.user_ids == two.user_ids  # the same tasks: the split fixes them
        for task in range(len(one)):
            rated = [
                sorted(
                    ts.support_item[task][ts.support_mask[task]].tolist()
                    + ts.query_item[task][ts.query_mask[task]].tolist()
                )
                for ts in (one, two)
            ]
            assert rated[0] == rated[1]  # the same ratings in each task
        queries = [ts.query_item.sort(1).values for ts in (one, two)]
        assert not (queries[0] == queries[1]).all()  # but other query draws


def test_fixed_query_roles_are_the_query_sets(tmp_path):
    placed = write_split_data(tmp_path, roles=True)
    cfg = split_config(tmp_path)
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    items = tasks.dataset.items.ids
    task_set = tasks.test["new_user"]
    for task, user in enumerate(task_set.user_ids):
        query = {
            items[row] for row in task_set.query_item[task][task_set.query_mask[task]].tolist()
        }
        expected = {
            item
            for (u, item), (state, _, q) in placed.items()
            if u == user and state == "new_user" and q
        }
        assert query == expected


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:-1], "is in no state of split.csv"),
        (lambda lines: [*lines, "u999,i1,warm"], "has no rating in ratings.csv"),
        (
            lambda lines: [lines[0], lines[1].replace(",warm", ",hot"), *lines[2:]],
            "line 2: state 'hot'",
        ),
        (lambda lines: [*lines, lines[1]], "is placed twice"),
        (lambda lines: ["user,item", *lines[1:]], "split header lacks ['state']"),
    ],
)
def test_bad_split_files_name_the_line(tmp_path, edit, message):
    write_split_data(tmp_path)
    split = tmp_path / "split.csv"
    lines = split.read_text().splitlines()
    lines = [lines[0], *sorted(lines[1:], key=lambda line: ",warm" not in line)]  # warm first
    split.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_dataset(split_config(tmp_path).data)


def test_a_pair_in_two_states_names_both_origins():
    one = np.ones(2, dtype=np.float32)
    rows = [
        Placed("warm_state", "u1", ["i0", "i1"], one, None, "a.json"),
        Placed("user_cold_state", "u1", ["i2", "i1"], one, None, "b.json"),
    ]
    with pytest.raises(DataError, match="user u1, item i1 is rated in both a.json and b.json"):
        states_from_rows(rows)
    # Placed twice in one state, the user's ratings are joined in order.
    rows[1] = rows[1]._replace(state="warm_state", items=["i2", "i3"])
    (user,) = states_from_rows(rows)["warm_state"]
    assert user.items == ["i0", "i1", "i2", "i3"] and user.query is None


def test_every_dataset_declares_its_settings_and_scoring():
    assert {"synthetic", "melu-ml1m", "csv", "amazon-unisrec", "tallrec-ml100k"} <= set(
        DATASETS.names()
    )
    for name in DATASETS.names():
        source = DATASETS.get(name)
        assert issubclass(source.Settings, DataConfig)
        assert source.scoring in ("rating", "ranking", "pooled")
    with pytest.raises(ConfigError, match="unknown dataset 'nope' \\(registered: amazon-unisrec"):
        load_config(None, ["data.name=nope"])
    # Each dataset's own section belongs to it alone.
    with pytest.raises(ConfigError, match="data.csv"):
        load_config(None, ["data.csv.ratings=x.csv"])


def test_data_command_refuses_a_dataset_without_files(capsys):
    from metarec.cli import main

    assert main(["data", "verify", "synthetic"]) == 2
    assert "no files to download or verify" in capsys.readouterr().err


def test_run_names_say_what_ran():
    assert load_config("experiments/synthetic/maml.yaml").name == "synthetic-maml"
    changed = load_config(
        "experiments/synthetic/maml.yaml",
        ["learner.name=mean", "learner.kind=bias", "output_dir=/tmp/x"],
    )
    assert changed.name == "synthetic-mean-maml-kind=bias"
    assert load_config("experiments/melu_ml1m/maml_residual.yaml").name == "melu-ml1m-maml-residual"
    assert load_config(None, ["data.name=csv"]).name == "csv-maml"
    assert load_config(None, ["name=mine"]).name == "mine"


PLUGIN_DATASET = """
from dataclasses import dataclass, field

from metarec.datasets.synthetic import Synthetic, SyntheticConfig, SyntheticSettings
from metarec.registry import DATASETS


@dataclass
class TinySettings(SyntheticSettings):
    synthetic: SyntheticConfig = field(default_factory=lambda: SyntheticConfig(n_users=120))


@DATASETS.register("tinyplug")
class Tiny(Synthetic):
    \"\"\"The synthetic data, 120 users.\"\"\"

    Settings = TinySettings
"""


def test_a_plugin_module_registers_a_dataset_before_the_config_is_checked(tmp_path, monkeypatch):
    (tmp_path / "tinyplug_data.py").write_text(PLUGIN_DATASET)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        cfg = load_config(None, ["plugins=[tinyplug_data]", "data.name=tinyplug"])
        assert cfg.data.synthetic.n_users == 120
        assert len(load_dataset(cfg.data).users) == 120
    finally:
        DATASETS.unregister("tinyplug")
        sys.modules.pop("tinyplug_data", None)
    with pytest.raises(ConfigError, match="plugin module 'no_such_module' cannot be imported"):
        load_config(None, ["plugins=[no_such_module]"])


PLUGIN_LEARNER = '''
"""A learner outside metarec: each task's support mean, for every query item."""

import torch

from metarec.learners.base import MetaLearner
from metarec.registry import LEARNERS


@LEARNERS.register("supportmean")
class SupportMean(MetaLearner):
    """Each task's mean support rating."""

    reads_item_text = False

    @classmethod
    def build_network(cls, *args, **kwargs):
        return torch.nn.Module()  # nothing to train

    def adapt(self, support):
        mask = support["mask"].to(support["rating"].dtype)
        return (support["rating"] * mask).sum(1) / mask.sum(1).clamp(min=1)

    def predict(self, state, query):
        return state[:, None].expand(query["item"].shape)
'''

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "oot-supportmean"
version = "0.1"

[project.entry-points."metarec.learners"]
supportmean = "oot_supportmean:SupportMean"
"""

TINY = ["data.synthetic.n_users=200", "data.synthetic.n_items=80", "trainer.progress_bar=false"]


def test_an_installed_out_of_tree_learner_trains_from_the_cli(tmp_path):
    package = tmp_path / "package"
    (package / "src" / "oot_supportmean").mkdir(parents=True)
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "src" / "oot_supportmean" / "__init__.py").write_text(PLUGIN_LEARNER)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "runs"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "metarec.cli",
            "train",
            "synthetic/maml",
            "learner.name=supportmean",
            *TINY,
            f"output_dir={out}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("synthetic-supportmean-maml-")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # Independently: each new user's support mean against their query ratings, task by task.
    cfg = load_config("experiments/synthetic/maml.yaml", TINY)
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task).test["new_user"]
    errors = []
    for task in range(len(tasks)):
        support = tasks.support_rating[task][tasks.support_mask[task]].double()
        query = tasks.query_rating[task][tasks.query_mask[task]].double()
        errors.append(float((query - support.mean()).abs().mean()))
    assert metrics["new_user"]["mae"] == pytest.approx(np.mean(errors), abs=1e-6)
    assert "supportmean" not in LEARNERS  # it lived in the child process only
    # The registry's own learner checks run against it (tests/conftest.py: METAREC_PLUGINS).
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            str(Path(__file__).parent / "test_learners.py"),
            "-k",
            "supportmean",
        ],
        env={**env, "METAREC_PLUGINS": "oot_supportmean"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert check.returncode == 0, check.stdout[-3000:]  # 5 if no test had selected it


DATASET_HOWTO = Path(__file__).parents[1] / "docs" / "data" / "adding-a-dataset.md"


def docs_dataset_example() -> str:
    """The complete dataset module of the docs' "Adding a dataset" page."""
    return DATASET_HOWTO.read_text().split("```python\n", 1)[1].split("```", 1)[0]


def test_the_docs_dataset_example_is_complete_and_loads(tmp_path):
    code = docs_dataset_example()
    assert len(code.strip().splitlines()) < 60
    rng = np.random.default_rng(0)
    lines = [
        f"{user}\t{item}\t{rng.integers(1, 6)}\t{880000000 + 1000 * item + user}"
        for user in range(1, 41)
        for item in rng.choice(np.arange(1, 61), size=30, replace=False).tolist()
    ]
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    namespace: dict = {}
    exec(compile(code, str(DATASET_HOWTO), "exec"), namespace)
    try:
        cfg = load_config(None, ["data.name=ml100k-ratings", f"data.root={tmp_path}"])
        dataset = load_dataset(cfg.data)
        assert dataset.name == "ml100k-ratings"
        assert dataset.source is DATASETS.get("ml100k-ratings")
        placed = {
            (user.user, item): rating
            for users in dataset.states.values()
            for user in users
            for item, rating in zip(user.items, user.ratings.tolist(), strict=True)
        }
        assert placed == {
            (user, item): float(rating)
            for user, item, rating, _ in (line.split("\t") for line in lines)
        }
        # The items first rated last are the new ones (20%): none is rated before any old one.
        new = {
            item for state in STATES[2:] for user in dataset.states[state] for item in user.items
        }
        assert len(new) == 12
        first = {}
        for _, item, _, when in (line.split("\t") for line in lines):
            first[item] = min(first.get(item, 10**12), int(when))
        assert min(first[item] for item in new) > max(
            first[item] for item in first if item not in new
        )
        assert DATASETS.get("ml100k-ratings").files.digests == {
            "u.data": "6e47046882bad158b0efbb84cd5cb987"
        }
    finally:
        DATASETS.unregister("ml100k-ratings")


@pytest.mark.parametrize("name", DATASETS.names())
def test_a_datasets_table_columns_are_metrics_its_runs_report(name):
    # A dataset's reproduction table (DataSource.table, else its kind's columns and extras)
    # names only metrics its runs write, and its first column is the validation metric that
    # picks the epoch kept, in that metric's direction.
    from metarec.metrics.evaluate import Scoring
    from metarec.metrics.names import METRICS

    source = DATASETS.get(name)
    if not source.table:
        return
    scoring = Scoring(source.scoring, extra=source.extra_metrics, primary=source.table[0])
    reported = set(scoring.names("like", True)) | set(scoring.names("rating", True))
    assert set(source.table) <= reported, set(source.table) - reported
    assert scoring.monitor == source.table[0]
    expected = "min" if METRICS[source.table[0]].lower_is_better else "max"
    assert scoring.mode == expected


def test_the_primary_metric_sets_what_picks_the_epoch_and_its_direction():
    from metarec.metrics.evaluate import Scoring

    assert (Scoring("rating").monitor, Scoring("rating").mode) == ("mae", "min")
    assert (Scoring("ranking").monitor, Scoring("ranking").mode) == ("ndcg@10", "max")
    lastfm = DATASETS.get("tanp-lastfm")
    scoring = Scoring(lastfm.scoring, extra=lastfm.extra_metrics, primary=lastfm.table[0])
    assert (scoring.monitor, scoring.mode) == ("ndcg@10", "max")
