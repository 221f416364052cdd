"""The Python API (`metarec.train`, `metarec.load`, `.predict`, `load_learner`) and
`metarec predict`, on one small synthetic run."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

import metarec
from metarec.api import load_learner, resolve_config
from metarec.catalog import LEARNERS
from metarec.cli import main
from metarec.config.schema import RunConfig
from metarec.errors import DataError
from metarec.learners.base import MetaLearner
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task
from metarec.pipeline import RunResult
from metarec.run import NEW_USER

from .conftest import SMALL


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> RunResult:
    out = tmp_path_factory.mktemp("runs")
    trainer = {"max_epochs": 1, "limit_train_batches": 0.5, "log_every_n_steps": 2}
    return metarec.train(
        "experiments/synthetic/maml.yaml", SMALL, trainer=trainer, output_dir=str(out)
    )


@pytest.fixture(scope="module")
def run(result):
    return metarec.load(result.run_dir)


def test_import_metarec_is_light_and_train_is_the_api_function():
    code = "import sys, metarec; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import metarec.api

    assert metarec.train is metarec.api.train and metarec.load is metarec.api.load


def test_train_takes_a_file_a_config_object_overrides_and_settings():
    cfg = resolve_config(
        "experiments/synthetic/maml.yaml",
        "seed=3",
        trainer={"max_epochs": 4},
        tracking={"tags": ["a b", "c"]},
        learner={"inner_lr": 1e-05},
    )
    # The name says what changed what runs; epochs and W&B tags do not name a run.
    name = "synthetic-maml-seed=3-inner_lr=1e-05"
    assert (cfg.name, cfg.seed, cfg.trainer.max_epochs) == (name, 3, 4)
    assert cfg.tracking.tags == ["a b", "c"] and cfg.learner.inner_lr == 1e-05
    again = resolve_config(cfg, ["trainer.max_epochs=5"])
    assert isinstance(again, RunConfig) and (again.seed, again.trainer.max_epochs) == (3, 5)
    assert resolve_config(cfg) is cfg


def test_train_returns_the_run_result(result):
    assert isinstance(result, RunResult)
    assert (result.run_dir / "checkpoints" / "best.ckpt").is_file()
    assert set(result.metrics) == {"warm", "new_user", "new_item", "new_user_item"}


def test_load_learner_rebuilds_the_learner(result):
    best = result.run_dir / "checkpoints" / "best.ckpt"
    saved = torch.load(best, weights_only=True)
    assert "name: synthetic-maml" in saved["hyper_parameters"]["metarec_config"]
    learner = load_learner(best)
    assert type(learner) is LEARNERS.get("maml") and not learner.training
    for key, value in saved["state_dict"].items():
        assert torch.equal(learner.state_dict()[key], value), key
    with pytest.raises(TypeError, match="metarec.api.load_learner"):
        MetaLearner.load_from_checkpoint(best)  # Lightning's way cannot rebuild the network


def test_a_checkpoint_without_the_config_uses_its_run_folder(result):
    state = torch.load(result.run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    del state["hyper_parameters"]
    older = result.run_dir / "checkpoints" / "older.ckpt"
    torch.save(state, older)
    try:
        assert type(load_learner(older)).__name__ == "MAML"
    finally:
        older.unlink()


def _task(run, scenario: str, index: int) -> tuple[list[tuple[str, float]], list[str]]:
    """Task ``index`` of a scenario as the API takes it: support (item, rating) pairs and the
    query item ids."""
    tasks, ids = run.tasks.test[scenario], run.tasks.dataset.items.ids
    support = tasks.support_mask[index]
    items, ratings = tasks.support_item[index][support], tasks.support_rating[index][support]
    query = tasks.query_item[index][tasks.query_mask[index]]
    pairs = zip([ids[row] for row in items.tolist()], ratings.tolist(), strict=True)
    return list(pairs), [ids[row] for row in query.tolist()]


def test_predict_gives_the_evaluations_query_predictions(result, run):
    """A warm test user's support ratings -> the very predictions evaluation made."""
    tasks = run.tasks.test["warm"]
    with torch.enable_grad():
        evaluated = run.learner(tasks[torch.arange(len(tasks))]).detach()
    per_task = read_per_task(result.run_dir / PER_TASK_FILE)["warm"]
    for index in (0, 3, len(tasks) - 1):
        pairs, query = _task(run, "warm", index)
        user = tasks.user_ids[index]
        scores = run.predict(pairs, items=query, user=user)
        assert list(scores) == query
        got = torch.tensor([scores[item] for item in query])
        torch.testing.assert_close(
            got, evaluated[index][tasks.query_mask[index]], atol=1e-5, rtol=0
        )
        mae = (got - tasks.query_rating[index][tasks.query_mask[index]]).abs().mean()
        assert float(mae) == pytest.approx(per_task["mae"][per_task["task"].index(user)], abs=1e-5)


def test_new_user_scores_every_item_and_features_matter(run):
    pairs, _ = _task(run, "new_user", 0)
    scores = run.predict(dict(pairs))  # a mapping works as well as pairs
    assert list(scores) == run.item_ids
    assert torch.isfinite(torch.tensor([*scores.values()])).all()
    assert run.tasks.dataset.users.ids[-1] == NEW_USER
    other = "M" if run.tasks.dataset.users.vocab["gender"][0] == "F" else "F"
    changed = run.predict(pairs, features={"gender": other, "age": "56"})
    assert any(abs(changed[item] - scores[item]) > 1e-6 for item in scores)
    top = run.recommend(pairs, k=5)
    assert len(top) == 5 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert not {item for item, _ in top} & {item for item, _ in pairs}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratings": [("nope", 4.0)]}, "rating 1: unknown item 'nope'"),
        ({"ratings": [("1", 4.0), ("2", 9.0)]}, "rating 2: rating 9 of item '2' is not 1..5"),
        ({"ratings": [("1", 4.0), ("1", 3.0)]}, "rating 2: item '1' rated twice (rating 1)"),
        ({"ratings": []}, "no ratings given"),
        ({"features": {"sex": "F"}}, "unknown user feature 'sex'"),
        ({"features": {"gender": "X"}}, "user feature 'gender': unknown value 'X'"),
        ({"user": "no-such-user"}, "unknown user 'no-such-user'"),
        ({"items": ["1", "nope"]}, "unknown item(s) to score: nope"),
    ],
)
def test_bad_prediction_input_is_named(run, kwargs, message):
    kwargs = {"ratings": [("1", 4.0)], **kwargs}
    with pytest.raises(DataError) as err:
        run.predict(**kwargs)
    assert message in str(err.value)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_predict_command_writes_the_top_items(result, run, tmp_path, capsys):
    pairs, _ = _task(run, "new_user", 1)
    ratings = _write(
        tmp_path / "me.csv", "item,rating\n" + "".join(f"{i},{r:g}\n" for i, r in pairs)
    )
    out = tmp_path / "top.csv"
    assert (
        main(
            [
                "predict",
                str(result.run_dir),
                "--ratings",
                ratings,
                "--top-k",
                "7",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["item", "score"] and len(rows) == 8
    expected = run.recommend(pairs, k=7)
    assert [row[0] for row in rows[1:]] == [item for item, _ in expected]
    assert [float(row[1]) for row in rows[1:]] == pytest.approx([s for _, s in expected], abs=1e-5)
    capsys.readouterr()
    assert (
        main(["predict", str(result.run_dir), "--ratings", ratings, "--top-k", "0", "--user", "5"])
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "item,score" and len(printed) == 1 + len(run.item_ids) - len(pairs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("item,rating\n1,4\n\nzz,3\n", "line 4: unknown item 'zz'"),
        ("item,rating\n1,4\n2,great\n", "line 3: rating 'great' is not a number"),
        ("item,rating\n1,4\n2,4,5\n", "line 3: 3 fields, expected 2"),
        ("movie,stars\n1,4\n", "line 1: the header must name the columns item and rating"),
        ("item,rating\n1,4\n1,5\n", "line 3: item '1' rated twice"),
    ],
)
def test_predict_command_names_the_bad_line(result, tmp_path, capsys, text, message):
    ratings = _write(tmp_path / "me.csv", text)
    assert main(["predict", str(result.run_dir), "--ratings", ratings]) == 2
    err = capsys.readouterr().err
    assert f"{ratings}, {message}" in err and "Traceback" not in err
