"""Bad input at every boundary: one metarec error (or a CacheWarning and a rebuild) whose
message names the file, line, key or id; never an error from deep inside torch or numpy.

Cases: the generic CSV loader (files, lines, ids, ratings, splits), MeLU's loader (unknown
ids, overlapping states), task building (support sets too small), the config loader (unknown
keys, wrong types, values outside the choices), the embedding cache (corrupt, another model)
and resuming (missing, corrupt or foreign checkpoints, changed settings).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metarec.catalog import load_dataset
from metarec.cli import main
from metarec.config.load import load_config, to_yaml
from metarec.data.scenarios import ColdStartTasks
from metarec.datasets.csv import load_csv
from metarec.errors import ConfigError, DataError
from metarec.resume import check_checkpoint, check_same_config, resume_checkpoint

from .test_melu_loader import FakeMelu, expect_error

RATINGS = ["user,item,rating,timestamp", "u1,i1,5,10", "u1,i2,3,20", "u2,i1,4,30"]
ITEMS = ["item,genre,title", "i1,Comedy|Drama,One", "i2,Action,Two"]
USERS = ["user,age", "u1,25", "u2,35"]


def write(root: Path, name: str, lines: list[str], data: bytes | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_bytes(data if data is not None else ("\n".join(lines) + "\n").encode())
    return path


def csv_config(**overrides):
    cfg = load_config(None, ["data.name=csv"]).data.csv
    return replace(cfg, **overrides)


def expect_csv_error(tmp_path: Path, *parts: str, ratings=RATINGS, **settings) -> None:
    """Write the tables, load them, and check the DataError names ``parts`` in order."""
    write(tmp_path, "ratings.csv", ratings)
    write(tmp_path, "items.csv", settings.pop("item_lines", ITEMS))
    write(tmp_path, "users.csv", settings.pop("user_lines", USERS))
    pattern = ".*".join(re.escape(part) for part in parts)
    with pytest.raises(DataError, match=pattern):
        load_csv(tmp_path, csv_config(**settings))


# --- the generic CSV format ------------------------------------------------------------------


def test_csv_good_tables_load(tmp_path):
    write(tmp_path, "ratings.csv", RATINGS)
    write(tmp_path, "items.csv", ITEMS)
    dataset = load_csv(tmp_path, csv_config(items="items.csv", new_user_fraction=0.5))
    assert sum(len(user.items) for users in dataset.states.values() for user in users) == 3
    assert dataset.items.vocab["genre"] == ["Comedy", "Drama", "Action"]


def test_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "ratings.csv"))):
        load_csv(tmp_path, csv_config())


def test_csv_empty_file(tmp_path):
    expect_csv_error(tmp_path, "ratings.csv", "empty file", ratings=[])


def test_csv_header_lacks_a_column(tmp_path):
    bad = ["user,item,score", "u1,i1,5"]
    expect_csv_error(tmp_path, "ratings.csv line 1", "no column 'rating'", ratings=bad)


def test_csv_line_with_too_few_fields(tmp_path):
    expect_csv_error(tmp_path, "ratings.csv line 3", "expected 4 fields, found 3",
                     ratings=[*RATINGS[:2], "u1,i2,3", *RATINGS[3:]])  # fmt: skip


def test_csv_rating_not_a_number(tmp_path):
    bad = [*RATINGS[:2], "u1,i2,good,20"]
    expect_csv_error(tmp_path, "ratings.csv line 3", "rating 'good' is not a finite number",
                     ratings=bad)  # fmt: skip


def test_csv_nan_rating(tmp_path):
    bad = [*RATINGS[:3], "u2,i1,nan,30"]
    expect_csv_error(tmp_path, "ratings.csv line 4", "rating 'nan'", ratings=bad)


def test_csv_rating_outside_the_declared_scale(tmp_path):
    bad = [*RATINGS[:2], "u1,i2,7,20"]
    expect_csv_error(tmp_path, "ratings.csv line 3", "rating 7", "[1, 5]", ratings=bad)


def test_csv_rating_scale_is_configurable(tmp_path):
    bad = [*RATINGS[:2], "u1,i2,0.5,20"]
    expect_csv_error(tmp_path, "line 3", "[1, 10]", ratings=bad, rating_max=10.0)


def test_csv_timestamp_not_a_number(tmp_path):
    bad = [*RATINGS[:2], "u1,i2,3,yesterday"]
    expect_csv_error(tmp_path, "ratings.csv line 3", "timestamp 'yesterday'", ratings=bad)


def test_csv_empty_user_id(tmp_path):
    bad = [*RATINGS[:2], ",i2,3,20"]
    expect_csv_error(tmp_path, "ratings.csv line 3", "empty user", ratings=bad)


def test_csv_duplicate_user_item_pair(tmp_path):
    bad = [*RATINGS, "u1,i1,2,40"]
    expect_csv_error(tmp_path, "ratings.csv line 5", "item i1 by user u1", "first on line 2",
                     ratings=bad)  # fmt: skip


def test_csv_unknown_item_id(tmp_path):
    bad = [*RATINGS, "u2,i9,2,40"]
    expect_csv_error(tmp_path, "ratings.csv line 5", "unknown item i9", "items.csv",
                     ratings=bad, items="items.csv")  # fmt: skip


def test_csv_unknown_user_id(tmp_path):
    bad = [*RATINGS, "u7,i1,2,40"]
    expect_csv_error(tmp_path, "ratings.csv line 5", "unknown user u7", "users.csv",
                     ratings=bad, users="users.csv")  # fmt: skip


def test_csv_duplicate_id_in_the_item_table(tmp_path):
    items = [*ITEMS, "i1,Drama,Again"]
    expect_csv_error(tmp_path, "items.csv line 4", "duplicate item i1", "line 2",
                     item_lines=items, items="items.csv")  # fmt: skip


def test_csv_item_table_malformed_line(tmp_path):
    write(tmp_path, "ratings.csv", RATINGS)
    write(tmp_path, "items.csv", [*ITEMS, "i3,Drama"])
    with pytest.raises(DataError, match="items.csv line 4: expected 3 fields, found 2"):
        load_csv(tmp_path, csv_config(items="items.csv"))


def test_csv_text_column_missing_from_the_item_table(tmp_path):
    write(tmp_path, "ratings.csv", RATINGS)
    write(tmp_path, "items.csv", ITEMS)
    with pytest.raises(DataError, match="items.csv line 1: no column 'plot'"):
        load_csv(tmp_path, csv_config(items="items.csv", text_columns=["plot"]))


def test_csv_not_utf8(tmp_path):
    write(tmp_path, "ratings.csv", [], data=b"user,item,rating\nu1,\xff,5\n")
    with pytest.raises(DataError, match="ratings.csv: not valid UTF-8 at byte"):
        load_csv(tmp_path, csv_config())


def test_csv_new_items_by_time_without_timestamps(tmp_path):
    bad = ["user,item,rating", "u1,i1,5"]
    expect_csv_error(tmp_path, "ratings.csv", "new_items=time needs a 'timestamp' column",
                     ratings=bad)  # fmt: skip


def test_csv_fraction_outside_zero_one(tmp_path):
    expect_csv_error(tmp_path, "key 'data.csv.new_user_fraction'", "1.5", new_user_fraction=1.5)


def test_csv_rating_scale_upside_down(tmp_path):
    expect_csv_error(tmp_path, "key 'data.csv.rating_min'", rating_min=5.0, rating_max=1.0)


# --- tasks: support sets too small after filtering -------------------------------------------


def test_support_sets_too_small_after_filtering(tmp_path):
    write(tmp_path, "ratings.csv", RATINGS)
    cfg = load_config(None, ["data.name=csv", f"data.root={tmp_path}"]).data
    with pytest.raises(DataError, match=r"csv/warm_state: no task has 13\.\.100 ratings.*"
                                        r"data.min_ratings"):  # fmt: skip
        ColdStartTasks(load_dataset(cfg), cfg)


def test_query_set_leaving_no_support(tmp_path):
    cfg = load_config(None, ["data.min_ratings=10", "data.query_size=10"]).data
    with pytest.raises(DataError, match=r"min_ratings \(10\) must exceed query_size \(10\)"):
        ColdStartTasks(load_dataset(replace(cfg, synthetic=replace(cfg.synthetic, n_users=30))),
                       cfg)  # fmt: skip


# --- MeLU's loader: unknown ids, overlapping states ------------------------------------------


def test_melu_unknown_movie(tmp_path):
    fake = FakeMelu(tmp_path / "melu", gz=False)
    fake.set_json("warm_state.json", {"1": ["1", "2", "99"], "2": ["3", "5"]})
    expect_error(fake, "warm_state.json", "user 1", "unknown movie 99")


def test_melu_states_overlap(tmp_path):
    fake = FakeMelu(tmp_path / "melu", gz=False)
    fake.set_json("item_cold_state.json", {"1": ["5", "2"], "2": ["6"]})
    expect_error(fake, "user 1", "item 2", "warm_state.json", "item_cold_state.json")


def test_melu_rating_outside_scale(tmp_path):
    fake = FakeMelu(tmp_path / "melu", gz=False)
    fake.set_json("warm_state_y.json", {"1": [5, 3, 9], "2": [1, 2]})
    expect_error(fake, "warm_state_y.json", "user 1", "rating #3 is 9")


# --- config ----------------------------------------------------------------------------------


def test_config_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path, "exp.yaml", ["data:", "  name: csv", "  csv:", "    ratingz: r.csv"])
    with pytest.raises(ConfigError, match=r"exp.yaml.*data\.csv\.ratingz"):
        load_config(path)


def test_config_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"data\.csv\.rating_max"):
        load_config(None, ["data.name=csv", "data.csv.rating_max=high"])


def test_config_value_outside_the_choices():
    with pytest.raises(ConfigError, match=r"key 'data\.csv\.new_items': 'date' is not one of"):
        load_config(None, ["data.name=csv", "data.csv.new_items=date"])


def test_config_unknown_learner():
    with pytest.raises(ConfigError, match=r"key 'learner\.name'.*nosuch"):
        load_config(None, ["learner.name=nosuch"])


def test_config_a_learner_cannot_run_with_stops_before_the_data(tmp_path, capsys):
    # An ID-only learner and item text: refused at load, before embedding any text.
    code = main(["train", "synthetic/mean", "item.text=join", f"output_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "key 'item.text'" in err
    assert not list(tmp_path.iterdir())


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    write(tmp_path, "ratings.csv", [*RATINGS, "u1,i1,2,40"])
    code = main(["train", "experiments/synthetic/maml.yaml", "data.name=csv",
                 f"data.root={tmp_path}", f"output_dir={tmp_path / 'runs'}"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert err.startswith("metarec: error: ratings.csv line 5: duplicate rating")


# --- the embedding cache: corrupt, or from another model -------------------------------------


def _cache():
    pytest.importorskip("safetensors")
    from metarec.encoders import cache

    return cache


def test_cache_corrupt_file_is_reported_and_rebuilt(tmp_path):
    cache = _cache()
    path = write(tmp_path, "text-x.safetensors", [], data=b"\x00garbage")
    with pytest.warns(cache.CacheWarning, match=re.escape(str(path)) + ".*unreadable"):
        assert cache.read_cache(path, key="k") is None


def test_cache_from_another_model_is_reported_and_rebuilt(tmp_path):
    cache = _cache()
    path = tmp_path / "text-y.safetensors"
    cache.write_cache(path, '{"model": "a"}', cache.text_digests(["t"]), torch.zeros(1, 4))
    with pytest.warns(cache.CacheWarning, match="written for another key"):
        assert cache.read_cache(path, key='{"model": "b"}') is None


# --- resuming --------------------------------------------------------------------------------


def test_resume_checkpoint_not_found(tmp_path):
    cfg = load_config(None, [f"resume={tmp_path / 'none.ckpt'}"])
    with pytest.raises(ConfigError, match=r"key 'resume': checkpoint .*none\.ckpt not found"):
        resume_checkpoint(cfg)


def test_resume_no_run_folder_to_continue(tmp_path):
    cfg = load_config(None, [f"output_dir={tmp_path}", "resume=true", "name=exp"])
    with pytest.raises(ConfigError, match=r"key 'resume': no run folder .*exp-<timestamp>"):
        resume_checkpoint(cfg)


def test_resume_corrupt_checkpoint(tmp_path):
    path = write(tmp_path, "last.ckpt", [], data=b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=re.escape(str(path)) + ": not a readable checkpoint"):
        check_checkpoint(path, torch.nn.Linear(2, 1))


def test_resume_checkpoint_that_needs_pickle_is_refused(tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "loops": {}, "epoch": 0, "x": Path("a")}, path)
    with pytest.raises(DataError, match="not a readable checkpoint"):
        check_checkpoint(path, torch.nn.Linear(2, 1))


def test_resume_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "last.ckpt"
    state = {"state_dict": torch.nn.Linear(3, 1).state_dict(), "loops": {}, "epoch": 1}
    torch.save(state, path)
    with pytest.raises(DataError, match=r"another model: parameter 'weight' is \(1, 3\) there, "
                                        r"\(1, 2\) here"):  # fmt: skip
        check_checkpoint(path, torch.nn.Linear(2, 1))


def test_resume_with_other_settings(tmp_path):
    (tmp_path / "config.yaml").write_text(to_yaml(load_config(None, ["seed=1"])))
    with pytest.raises(ConfigError, match=r"key 'seed': .*config\.yaml has 1, this run 0"):
        check_same_config(load_config(None, ["resume=true"]), tmp_path)
    check_same_config(load_config(None, ["seed=1", "trainer.max_epochs=40"]), tmp_path)


def test_versions_json_that_is_not_json(tmp_path):
    from metarec.resume import write_versions

    (tmp_path / "versions.json").write_text("{half")
    with pytest.raises(DataError, match="versions.json: not valid JSON"):
        write_versions(load_config(None), tmp_path, resumed_from=tmp_path / "last.ckpt")
    json.loads(write_versions(load_config(None), tmp_path).read_text())  # a fresh run rewrites
