"""The generic CSV loader on MovieLens-shaped files: ML-100K's ``u.data`` (tab, no header) and
ML-1M's ``ratings.dat`` (``::``, no header), loaded with the configs documented in
``metarec/datasets/csv.py``; bad lines in them; the warning for a test scenario of few tasks.

Every file is generated here; the real MovieLens files are never read.
"""

from __future__ import annotations

import gzip
import logging
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from metarec.catalog import load_dataset
from metarec.config.load import load_config
from metarec.data.scenarios import FEW_TASKS, ColdStartTasks
from metarec.datasets import csv as generic
from metarec.datasets.csv import load_csv
from metarec.errors import DataError

COLUMNS = ["user", "item", "rating", "timestamp"]


def movielens_rows(n_users: int = 30, n_items: int = 50, per_user: int = 20, seed: int = 0):
    """(user, item, rating, timestamp) rows as MovieLens orders them: by user, then time."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        items = rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False)
        times = np.sort(rng.integers(874_724_710, 893_286_638, size=per_user))
        ratings = rng.integers(1, 6, size=per_user)
        rows += [
            (user, int(i), int(r), int(t)) for i, r, t in zip(items, ratings, times, strict=True)
        ]
    return rows


def write_lines(path: Path, lines: list[str]) -> Path:
    """The lines, newline-ended; gzipped when the name ends in ``.gz``."""
    data = "".join(f"{line}\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def as_lines(rows, sep: str) -> list[str]:
    return [sep.join(str(field) for field in row) for row in rows]


def documented_configs() -> dict[str, dict]:
    """The YAML examples of metarec.datasets.csv's docstring, by ratings file name."""
    blocks = re.findall(r"^    data:.*\n(?:^      .*\n)+", generic.__doc__, flags=re.MULTILINE)
    configs = [yaml.safe_load(textwrap.dedent(block)) for block in blocks]
    return {config["data"]["csv"]["ratings"]: config for config in configs}


def load_documented(tmp_path: Path, ratings: str, *overrides: str):
    """Load ``tmp_path`` with the documented config for ``ratings`` (as an experiment file)."""
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(documented_configs()[ratings]))
    cfg = load_config(experiment, [f"data.root={tmp_path}", *overrides]).data
    return load_csv(cfg.root, cfg.csv, seed=cfg.seed)


def summary(dataset):
    """Per state: the users and their (item, rating) lists, for comparing two loads."""
    return {
        state: [(u.user, u.items, u.ratings.tolist()) for u in users]
        for state, users in dataset.states.items()
    }


def with_header(tmp_path: Path, rows):
    """The same ratings as a plain CSV with a header row, loaded with the defaults."""
    folder = tmp_path / "with_header"
    folder.mkdir()
    write_lines(folder / "ratings.csv", [",".join(COLUMNS), *as_lines(rows, ",")])
    return load_csv(folder, load_config(None, ["data.name=csv"]).data.csv)


# --- the documented MovieLens configs --------------------------------------------------------


def test_docstring_documents_both_movielens_files():
    configs = documented_configs()
    assert set(configs) == {"u.data", "ratings.dat"}
    assert configs["u.data"]["data"]["csv"]["sep"] == "\t"
    assert configs["ratings.dat"]["data"]["csv"]["sep"] == "::"
    for config in configs.values():
        assert config["data"]["csv"]["header"] is False
        assert config["data"]["csv"]["columns"] == COLUMNS


@pytest.mark.parametrize("name", ["u.data", "u.data.gz"])
def test_ml100k_u_data_tab_without_header(tmp_path, name):
    rows = movielens_rows()
    write_lines(tmp_path / name, as_lines(rows, "\t"))
    dataset = load_documented(tmp_path, "u.data", f"data.csv.ratings={name}")
    loaded = [(u.user, i) for users in dataset.states.values() for u in users for i in u.items]
    assert sorted(loaded) == sorted((str(user), str(item)) for user, item, _, _ in rows)
    assert len(dataset.users) == 30 and len(dataset.items) == len({row[1] for row in rows})
    assert summary(dataset) == summary(with_header(tmp_path, rows))


def test_ml1m_ratings_dat_double_colon_without_header(tmp_path):
    rows = movielens_rows(n_users=25, n_items=80, per_user=30, seed=1)
    write_lines(tmp_path / "ratings.dat", as_lines(rows, "::"))
    dataset = load_documented(tmp_path, "ratings.dat")
    assert sum(len(u.items) for users in dataset.states.values() for u in users) == len(rows)
    assert {u.user for users in dataset.states.values() for u in users} == {
        str(user) for user in range(1, 26)
    }
    assert summary(dataset) == summary(with_header(tmp_path, rows))


def test_one_line_overrides_load_ratings_dat(tmp_path):
    rows = movielens_rows(seed=2)
    write_lines(tmp_path / "ratings.dat", as_lines(rows, "::"))
    overrides = ["data.name=csv", f"data.root={tmp_path}", "data.csv.ratings=ratings.dat",
                 "data.csv.sep='::'", "data.csv.header=false",
                 "data.csv.columns=[user,item,rating,timestamp]"]  # fmt: skip
    cfg = load_config(None, overrides).data
    assert summary(load_dataset(cfg)) == summary(with_header(tmp_path, rows))


def test_three_columns_without_timestamps(tmp_path):
    rows = movielens_rows(seed=3)
    write_lines(tmp_path / "ratings.dat", as_lines([row[:3] for row in rows], "::"))
    dataset = load_documented(tmp_path, "ratings.dat", "data.csv.columns=[user,item,rating]",
                              "data.csv.new_items=id")  # fmt: skip
    assert sum(len(u.items) for users in dataset.states.values() for u in users) == len(rows)


def test_separator_of_several_characters_is_literal(tmp_path):
    rows = movielens_rows(seed=4)
    write_lines(tmp_path / "ratings.dat", ["user||item||rating||timestamp",
                                           *as_lines(rows, "||")])  # fmt: skip
    cfg = load_config(None, ["data.name=csv", "data.csv.ratings=ratings.dat",
                             "data.csv.sep='||'"]).data.csv  # fmt: skip
    assert summary(load_csv(tmp_path, cfg)) == summary(with_header(tmp_path, rows))


def test_blank_lines_are_skipped_and_numbers_kept(tmp_path):
    rows = movielens_rows(seed=5)
    lines = as_lines(rows, "\t")
    write_lines(tmp_path / "u.data", ["", " ", *lines[:3], "", *lines[3:], ""])
    assert summary(load_documented(tmp_path, "u.data")) == summary(with_header(tmp_path, rows))
    write_lines(tmp_path / "u.data", ["", " ", *lines[:3], "", "1\t2\t3", *lines[3:]])
    with pytest.raises(DataError, match=r"u\.data line 7: expected 4 fields, found 3"):
        load_documented(tmp_path, "u.data")


# --- bad lines name the file and the line ----------------------------------------------------

BAD_LINES = {
    "too few fields": ("1{s}5{s}3", "expected 4 fields, found 3"),
    "too many fields": ("1{s}5{s}3{s}881250949{s}9", "expected 4 fields, found 5"),
    "rating not a number": ("1{s}5{s}good{s}881250949", "rating 'good' is not a finite number"),
    "timestamp not a number": ("1{s}5{s}3{s}soon", "timestamp 'soon' is not a finite number"),
    "empty user": ("{s}5{s}3{s}881250949", "empty user"),
    "rating off the scale": ("1{s}5{s}9{s}881250949", "rating 9 is outside the declared scale"),
}


@pytest.mark.parametrize("ratings, sep", [("u.data", "\t"), ("ratings.dat", "::")])
@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_bad_line_names_file_and_line(tmp_path, ratings, sep, bad):
    line, message = BAD_LINES[bad]
    lines = as_lines(movielens_rows(), sep)
    write_lines(tmp_path / ratings, [*lines[:4], line.format(s=sep), *lines[4:]])
    with pytest.raises(DataError, match=re.escape(f"{ratings} line 5: {message}")):
        load_documented(tmp_path, ratings)


@pytest.mark.parametrize("ratings, sep", [("u.data", "\t"), ("ratings.dat", "::")])
def test_first_line_of_the_wrong_width(tmp_path, ratings, sep):
    lines = as_lines(movielens_rows(), sep)
    write_lines(tmp_path / ratings, [sep.join(["1", "5", "3"]), *lines])
    with pytest.raises(DataError, match=re.escape(f"{ratings} line 1: expected 4 fields, found 3")):
        load_documented(tmp_path, ratings)


def test_stray_quote_names_the_line(tmp_path):
    write_lines(tmp_path / "ratings.csv", ["user,item,rating", "u1,i1,5", 'u1,"i2"x,3', "u2,i1,4"])
    with pytest.raises(DataError, match=r"ratings\.csv line 3: malformed"):
        load_csv(tmp_path, load_config(None, ["data.name=csv", "data.csv.new_items=id"]).data.csv)


def test_quoted_field_holding_the_separator(tmp_path):
    write_lines(tmp_path / "ratings.csv", ["user,item,rating", 'u1,"i,1",5', "u2,i2,4"])
    cfg = load_config(None, ["data.name=csv", "data.csv.new_items=id"]).data.csv
    dataset = load_csv(tmp_path, cfg)
    assert sorted(dataset.items.ids) == ["i,1", "i2"]


# --- header and columns settings -------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("data.csv.columns=[]", r"key 'data\.csv\.columns': empty.*header is false"),
        ("data.csv.columns=[user,item,score,timestamp]",
         r"key 'data\.csv\.columns': no column 'rating'.*u\.data"),
        ("data.csv.columns=[user,item,rating,user]",
         r"key 'data\.csv\.columns': repeated column names"),
        ("data.csv.header=true", r"u\.data line 1: no column 'user'.*data\.csv\.header"),
    ],
)  # fmt: skip
def test_bad_header_and_column_settings_name_the_key(tmp_path, setting, message):
    """No header needs the columns, which name the rating once each; a headerless file read
    with a header says which settings to use."""
    write_lines(tmp_path / "u.data", as_lines(movielens_rows(), "\t"))
    with pytest.raises(DataError, match=message):
        load_documented(tmp_path, "u.data", setting)


def test_empty_file_without_header(tmp_path):
    write_lines(tmp_path / "ratings.dat", [])
    with pytest.raises(DataError, match=r"ratings\.dat: no ratings$"):
        load_documented(tmp_path, "ratings.dat")


# --- a test scenario of few tasks is flagged -------------------------------------------------


def test_few_tasks_warning_names_scenario_and_count(tmp_path, caplog):
    write_lines(tmp_path / "ratings.dat",
                as_lines(movielens_rows(n_users=100, n_items=120, per_user=40), "::"))  # fmt: skip
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(documented_configs()["ratings.dat"]))
    cfg = load_config(experiment, [f"data.root={tmp_path}", "data.min_ratings=4",
                                   "data.query_size=2"]).data  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="metarec.data.scenarios"):
        tasks = ColdStartTasks(load_dataset(cfg), cfg)
    sizes = {scenario: len(task_set) for scenario, task_set in tasks.test.items()}
    few = {scenario for scenario, size in sizes.items() if size < FEW_TASKS}
    assert few and few != set(sizes), sizes  # the data gives both kinds
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == len(few)
    for scenario in few:
        assert any(f"csv test/{scenario} has only {sizes[scenario]} tasks" in m for m in warned)
