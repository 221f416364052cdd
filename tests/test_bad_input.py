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


# --- every setting's domain, through the command line ----------------------------------------
# Each case: the overrides, then what the one error line must name (key, value, what is
# allowed). No run folder may appear: the config is checked before any data is read.

HAS_GPU = torch.cuda.is_available()
BAD_SETTINGS = [
    (["data.query_size=-1"], "key 'data.query_size': -1 is not allowed; it must be at least 1"),
    (["data.min_ratings=0"], "key 'data.min_ratings': 0 is not allowed"),
    (["data.min_ratings=50", "data.max_ratings=20"], "key 'data.min_ratings': 50 is above"),
    (
        ["data.val_fraction=1.5"],
        "key 'data.val_fraction': 1.5 is not allowed; it must be in (0, 1)",
    ),
    (["data.val_fraction=0.6", "data.test_fraction=0.4"], "leave no warm user to meta-train on"),
    (["data.test_fraction=-0.1"], "key 'data.test_fraction': -0.1 is not allowed"),
    (["data.seed=-1"], "key 'data.seed': -1 is not allowed; it must be at least 0"),
    (["data.synthetic.max_ratings=5"], "key 'data.synthetic.max_ratings': 5 is below"),
    (["data.synthetic.n_users=0"], "key 'data.synthetic.n_users': 0 is not allowed"),
    (["data.synthetic.noise=-1"], "key 'data.synthetic.noise': -1.0 is not allowed"),
    (["data.synthetic.new_user_fraction=1"], "key 'data.synthetic.new_user_fraction': 1.0"),
    (
        ["learner.inner_steps=-2"],
        "key 'learner.inner_steps': -2 is not allowed; it must be at least 0",
    ),
    (["learner.inner_lr=0"], "key 'learner.inner_lr': 0.0 is not allowed; it must be above 0"),
    (["learner.outer_lr=nan"], "key 'learner.outer_lr': nan is not a finite number"),
    (["learner.outer_lr=inf"], "key 'learner.outer_lr': inf is not a finite number"),
    (["learner.meta_batch_size=0"], "key 'learner.meta_batch_size': 0 is not allowed"),
    (["learner.eval_batch_size=-8"], "key 'learner.eval_batch_size': -8 is not allowed"),
    (["learner.adapt=some"], "key 'learner.adapt': 'some' is not one of all, decision, last"),
    (
        ["model.embedding_dim=0"],
        "key 'model.embedding_dim': 0 is not allowed; it must be at least 1",
    ),
    (["model.hidden=[64,-5]"], "key 'model.hidden': [64, -5] (element -5) is not allowed"),
    (
        ["trainer.max_epochs=-1"],
        "key 'trainer.max_epochs': -1 is not allowed; it must be at least 0",
    ),
    (["trainer.limit_train_batches=0"], "key 'trainer.limit_train_batches': 0 is not allowed"),
    (["trainer.limit_train_batches=1.5"], "key 'trainer.limit_train_batches': 1.5 is not allowed"),
    (
        ["trainer.devices=0"],
        "key 'trainer.devices': 0 is not allowed; it must be at least 1, or -1",
    ),
    (["trainer.num_nodes=0"], "key 'trainer.num_nodes': 0 is not allowed"),
    (["trainer.gradient_clip_val=-1"], "key 'trainer.gradient_clip_val': -1.0 is not allowed"),
    (["seed=-5"], "key 'seed': -5 is not allowed; it must be at least 0"),
    (["encoder.max_length=0"], "key 'encoder.max_length': 0 is not allowed"),
    (["task.support_size=0"], "key 'task.support_size': 0 is not allowed"),
    (["task.warm=[]"], "key 'task.warm': an empty list"),
    (["task.warm=[hot]"], "key 'task.warm': ['hot'] is not a list of heldout, seen, warmup"),
    (
        ["learner.name=mean", "learner.kind=shrunk", "learner.item_pseudo=-1"],
        "key 'learner.item_pseudo': -1.0",
    ),
    (["learner.name=finetune", "learner.inner_steps=-1"], "key 'learner.inner_steps': -1"),
    (["learner.name=attention", "learner.dropout=1"], "key 'learner.dropout': 1.0 is not allowed"),
    (["data.name=csv", "data.csv.new_user_fraction=0"], "key 'data.csv.new_user_fraction': 0.0"),
    (["data.name=nope"], "key 'data.name': unknown dataset 'nope'"),
    (["plugins=[no_such_module]"], "plugin module 'no_such_module' cannot be imported"),
    (["trainer.max_epochs=two"], "trainer.max_epochs"),
    (["trainer.precision=bogus"], "precision bogus): Precision 'bogus' is invalid"),
    (["trainer.strategy=bogus"], "strategy bogus, precision 32-true): You selected an invalid"),
    # A GPU this machine lacks (skipped where there is one).
    *([(["trainer.accelerator=gpu"], "(accelerator gpu, devices 1")] if not HAS_GPU else []),
    (["item.text=join", "encoder.model=/nonexistent"], "encoder.model: model folder /nonexistent"),
    (["item.text=join", "encoder.device=bogus"], "encoder.device: 'bogus' is not a device"),
]


def one_error_line(capsys, args: list[str]) -> str:
    """Run the command line; it must fail with one line and no traceback: return the line."""
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("metarec: error: ")
    return err


@pytest.mark.parametrize(("overrides", "named"), BAD_SETTINGS, ids=lambda x: str(x)[:40])
def test_a_setting_outside_its_domain_is_one_line_before_any_file(
    tmp_path, capsys, overrides, named
):
    out = tmp_path / "runs"
    err = one_error_line(capsys, ["train", "synthetic/maml", *overrides, f"output_dir={out}"])
    assert named in err
    assert not out.exists() or not any(out.iterdir())  # no run folder, nothing written


def test_a_scalar_for_a_list_is_a_one_element_list(tmp_path):
    assert load_config(None, ["task.warm=warmup"]).task.warm == ["warmup"]
    assert load_config(None, ["model.hidden=16"]).model.hidden == [16]
    path = write(tmp_path, "exp.yaml", ["task:", "  warm: seen", "model:", "  hidden: 8"])
    cfg = load_config(path)
    assert (cfg.task.warm, cfg.model.hidden) == (["seen"], [8])


def test_a_count_of_batches_is_a_count_and_a_decimal_a_fraction():
    assert load_config(None, ["trainer.limit_train_batches=1"]).trainer.limit_train_batches == 1
    fraction = load_config(None, ["trainer.limit_train_batches=1.0"]).trainer.limit_train_batches
    assert isinstance(fraction, float) and fraction == 1.0
    count = load_config(None, ["trainer.limit_train_batches=3"]).trainer.limit_train_batches
    assert isinstance(count, int) and not isinstance(count, bool)


def test_too_few_warm_users_names_the_parts_left_empty(tmp_path, capsys):
    args = ["train", "synthetic/maml", "data.synthetic.new_user_fraction=0.999",
            f"output_dir={tmp_path / 'runs'}"]  # fmt: skip
    err = one_error_line(capsys, args)
    assert "the warm state gives 1 tasks" in err and "validation" in err


def test_predict_top_k_below_zero_is_refused(tmp_path, capsys):
    err = one_error_line(capsys, ["predict", str(tmp_path), "--ratings", "r.csv", "--top-k", "-3"])
    assert (
        err == "metarec: error: predict: argument --top-k: -3 is not allowed; it must be at least 0"
    )


def test_a_truncated_run_config_names_the_file_and_line(tmp_path, capsys):
    run = tmp_path / "run"
    write(run, "config.yaml", [], data=to_yaml(load_config(None)).encode()[:300])
    write(tmp_path, "r.csv", ["item,rating", "i1,4"])
    err = one_error_line(capsys, ["predict", str(run), "--ratings", str(tmp_path / "r.csv")])
    assert f"{run / 'config.yaml'} line " in err and "not valid YAML" in err
