"""``metarec reproduce``: the plan of runs, failures in the table, resuming, the report."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

import metarec.train
from metarec import reproduce as rep
from metarec.cli import main
from metarec.config import ConfigError
from metarec.metrics import confidence_interval
from tests.conftest import SMALL

FAST = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    """A folder of three synthetic experiments: an ID-only model, a learner with item
    features, the text-only baseline."""
    folder = tmp_path / "experiments" / "synthetic"
    folder.mkdir(parents=True)
    for name in ("mean", "ridge", "mf"):
        shutil.copy(rep.EXPERIMENTS / "synthetic" / f"{name}.yaml", folder)
    (folder / "textsim.yaml").write_text(
        "name: t\ndata:\n  name: synthetic\nitem:\n  text: replace\nlearner:\n  name: textsim\n"
    )
    monkeypatch.setattr(rep, "EXPERIMENTS", folder.parent)
    return folder


def test_plan_gives_text_variants_only_to_learners_that_read_item_text(experiments):
    runs = rep.plan(experiments, None, seeds=2)
    variants = {(run.method, run.text) for run in runs}
    assert variants == {("mean", "none"), ("mf", "none"), ("ridge", "none"),
                        ("ridge", "join"), ("textsim", "replace")}  # fmt: skip
    assert sorted(run.seed for run in runs if run.method == "ridge") == [0, 0, 1, 1]


def test_plan_names_an_unknown_method_and_a_bad_seed_count(experiments):
    with pytest.raises(ConfigError, match="unknown methods \\['maml'\\]"):
        rep.plan(experiments, ["mean", "maml"], seeds=1)
    with pytest.raises(ConfigError, match="--seeds"):
        rep.plan(experiments, None, seeds=0)
    with pytest.raises(ConfigError, match="no experiments for 'nope'"):
        rep.experiments_folder("nope")


def test_a_failed_run_is_in_the_table_and_the_others_are_aggregated(
    experiments, tmp_path, monkeypatch
):
    real_train = metarec.train.train

    def train(cfg):
        if cfg.learner.name == "ridge" and cfg.item.text == "join" and cfg.seed == 1:
            raise RuntimeError("out of memory")
        return real_train(cfg)

    monkeypatch.setattr(metarec.train, "train", train)
    out = tmp_path / "out"
    rows, table, _ = rep.reproduce("synthetic", seeds=2, methods=["mean", "ridge"],
                                   overrides=FAST, out=out, progress=False)  # fmt: skip
    assert [r for r in rows if r["status"] != "ok"] == [
        r for r in rows if r["status"] == "failed: RuntimeError: out of memory"
    ]
    assert "| warm | ridge | join |" in table and "1 (1 failed)" in table
    assert "ridge (item.text=join): failed: RuntimeError: out of memory" in table
    # The summary is the mean and t-interval of the runs' own numbers.
    summary = {(e["method"], e["text"], e["scenario"]): e for e in rep.aggregate(rows)}
    maes = [r["mae"] for r in rows if r["method"] == "ridge" and r["text"] == "none"
            and r.get("scenario") == "new_user"]  # fmt: skip
    entry = summary[("ridge", "none", "new_user")]
    assert len(maes) == 2 and entry["mae"] == pytest.approx(statistics.mean(maes))
    assert entry["mae_ci"] == pytest.approx(confidence_interval(maes))
    assert summary[("ridge", "join", "new_user")]["seeds"] == 1
    saved = json.loads((out / "runs.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "summary.csv").read_text().startswith("method,text,scenario,seeds")


def test_a_rerun_keeps_finished_runs_and_reruns_failed_or_changed_ones(
    experiments, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    calls = []
    real_train = metarec.train.train

    def train(cfg):
        calls.append((cfg.learner.name, cfg.seed))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_train(cfg)

    monkeypatch.setattr(metarec.train, "train", train)
    first, _, _ = rep.reproduce("synthetic", seeds=2, methods=["mean"], overrides=FAST, out=out,
                                progress=False)  # fmt: skip
    assert calls == [("mean", 0), ("mean", 1)]
    second, _, _ = rep.reproduce("synthetic", seeds=2, methods=["mean"], overrides=FAST,
                                 out=out, progress=False)  # fmt: skip
    assert calls[2:] == [("mean", 1)]  # only the failed run ran again
    assert [r for r in second if r["seed"] == 0] == [r for r in first if r["seed"] == 0]
    rep.reproduce("synthetic", seeds=2, methods=["mean"], out=out, progress=False,
                  overrides=[*FAST, "learner.kind=item"])  # fmt: skip
    assert calls[3:] == [("mean", 0), ("mean", 1)]  # another config: both again


def test_two_worker_processes_give_the_same_numbers_as_one(experiments, tmp_path):
    args = {"seeds": 1, "methods": ["ridge"], "texts": ["none"], "overrides": FAST,
            "progress": False}  # fmt: skip
    one, _, _ = rep.reproduce("synthetic", out=tmp_path / "one", jobs=1, **args)
    two, _, _ = rep.reproduce("synthetic", out=tmp_path / "two", jobs=2, **args)
    assert [r["mae"] for r in one] == [r["mae"] for r in two]


def test_results_command_refills_the_readme_block(experiments, tmp_path, capsys):
    out = tmp_path / "results" / "synthetic"
    rep.reproduce("synthetic", seeds=1, methods=["mean"], overrides=FAST, out=out, progress=False)
    readme = tmp_path / "README.md"
    start = rep.README_START.format(name="synthetic", folder=out)
    readme.write_text(f"# Title\n\n{start}\nold table\n{rep.README_END.format(name='synthetic')}\n"
                      "## After\n")  # fmt: skip
    assert main(["results", str(out), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith("## After\n")
    assert "| warm | mean | none |" in text and "Wall time:" in text
    readme.write_text("# no markers\n")
    assert main(["results", str(out), "--readme", str(readme)]) == 2
    assert "has no block" in capsys.readouterr().err


def test_cached_tasks_give_the_same_numbers_as_fresh_ones(tmp_path, monkeypatch):
    """A worker prepares each run's tasks once (``train.TASK_CACHE``); reusing them after
    other runs must change no number."""
    from metarec.config import load_config

    def run(name, text="none", seed=0):
        overrides = [*FAST, f"learner.name={name}", f"item.text={text}", f"seed={seed}",
                     f"output_dir={tmp_path}"]  # fmt: skip
        return metarec.train.train(load_config(None, overrides)).metrics

    fresh = run("maml", seed=1)
    monkeypatch.setattr(metarec.train, "TASK_CACHE", {})
    run("maml", seed=0)
    run("ridge", text="join")  # fills the cache's second entry
    cached = run("maml", seed=1)
    assert len(metarec.train.TASK_CACHE) == 2
    assert cached == fresh
    run("ridge", text="replace")  # a third variant evicts the oldest
    assert len(metarec.train.TASK_CACHE) == 2
