"""``metarec reproduce``: the plan of runs, failures in the table, resuming, the report."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

import metarec.pipeline
from metarec import paths
from metarec import reproduce as rep
from metarec.cli import main
from metarec.config.load import load_config
from metarec.errors import ConfigError, DataError
from metarec.metrics.names import ESTIMATED
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task, write_per_task
from metarec.paths import experiments_folder
from metarec.report.compare import aggregate, findings, table_lines, wins
from metarec.reproduce import spec
from metarec.task_cache import TaskCache
from tests.conftest import SMALL

RATING, RANKING = ESTIMATED["rating"], ESTIMATED["ranking"]

FAST = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
HELDOUT = {"warms": ["heldout"]}  # one warm pass: the tests of running and resuming


@pytest.fixture
def experiments(tmp_path, monkeypatch):
    """A folder of three synthetic experiments: an ID-only model, a learner with item
    features, the text-only baseline."""
    folder = tmp_path / "experiments" / "synthetic"
    folder.mkdir(parents=True)
    shipped = paths.experiments_root() / "synthetic"
    for path in [shipped / f"{name}.yaml" for name in ("mean", "ridge", "mf")]:
        shutil.copy(path, folder)
    if (shipped / "base.yaml").exists():  # what the experiment files leave to their base
        shutil.copy(shipped / "base.yaml", folder)
    (folder / "textsim.yaml").write_text(
        "name: t\ndata:\n  name: synthetic\nitem:\n  text: replace\nlearner:\n  name: textsim\n"
    )
    monkeypatch.setattr(paths, "experiments_root", lambda: folder.parent)
    return folder


def test_plan_gives_text_variants_only_to_learners_that_read_item_text(experiments):
    runs = spec.plan(experiments, None, seeds=2)
    variants = {(run.method, run.text) for run in runs}
    assert variants == {("mean", "none"), ("mf", "none"), ("ridge", "none"),
                        ("ridge", "join"), ("textsim", "replace")}  # fmt: skip
    assert sorted(run.seed for run in runs if run.method == "ridge") == [0, 0, 1, 1]


def test_runs_on_the_same_tasks_are_scheduled_together_longest_first(experiments, tmp_path):
    (experiments / "ridge.yaml").write_text(
        (experiments / "ridge.yaml").read_text() + "\ntrainer:\n  max_epochs: 40\n"
    )
    runs = spec.plan(experiments, None, seeds=2, data_seeds=True)  # 2 data seeds x 3 texts
    order = rep.schedule(runs, [], tmp_path)
    assert sorted(order, key=runs.index) == runs  # every run, once
    keys = [TaskCache.key(load_config(run.config, spec.run_overrides(run, [], tmp_path)))
            for run in order]  # fmt: skip
    groups = [key for i, key in enumerate(keys) if i == 0 or key != keys[i - 1]]
    assert len(groups) == len(set(keys)) == 6  # each group's runs adjacent
    epochs = [load_config(run.config).trainer.max_epochs for run in order]
    # The groups holding a 40-epoch ridge run come first; in each group the longest first.
    firsts = [epochs[keys.index(key)] for key in groups]
    assert firsts == sorted(firsts, reverse=True) and firsts[0] == 40
    for key in groups:
        mine = [e for e, k in zip(epochs, keys, strict=True) if k == key]
        assert mine == sorted(mine, reverse=True)


def test_plan_names_an_unknown_method_and_a_bad_seed_count(experiments):
    with pytest.raises(ConfigError, match="unknown methods \\['maml'\\]"):
        spec.plan(experiments, ["mean", "maml"], seeds=1)
    with pytest.raises(ConfigError, match="--seeds"):
        spec.plan(experiments, None, seeds=0)
    with pytest.raises(ConfigError, match="no experiments for 'nope'"):
        experiments_folder("nope")


def test_a_failed_run_is_in_the_table_and_the_others_are_aggregated(
    experiments, tmp_path, monkeypatch
):
    real_train = metarec.pipeline.train

    def train(cfg, task_cache=None):
        if cfg.learner.name == "ridge" and cfg.item.text == "join" and cfg.seed == 1:
            raise RuntimeError("out of memory")
        return real_train(cfg, task_cache)

    monkeypatch.setattr(metarec.pipeline, "train", train)
    out = tmp_path / "out"
    rows, table, _ = rep.reproduce("synthetic", seeds=2, methods=["mean", "ridge"],
                                   overrides=FAST, out=out, progress=False, **HELDOUT)  # fmt: skip
    assert [r for r in rows if r["status"] != "ok"] == [
        r for r in rows if r["status"] == "failed: RuntimeError: out of memory"
    ]
    assert "| warm | ridge | join |" in table and "1 (1 failed)" in table
    assert "ridge (item.text=join): failed: RuntimeError: out of memory" in table
    # The summary's mean is that of the runs' own numbers, within its bootstrap interval.
    summary = {(e["method"], e["text"], e["scenario"]): e for e in aggregate(rows, RATING)}
    maes = [r["mae"] for r in rows if r["method"] == "ridge" and r["text"] == "none"
            and r.get("scenario") == "new_user"]  # fmt: skip
    entry = summary[("ridge", "none", "new_user")]
    assert len(maes) == 2 and entry["mae"] == pytest.approx(statistics.mean(maes), abs=1e-12)
    assert entry["mae_low"] < entry["mae"] < entry["mae_high"]
    assert entry["reference"] == "mean" and 0 < entry["vs_reference"]["p"] <= 1
    assert summary[("ridge", "join", "new_user")]["seeds"] == 1
    saved = json.loads((out / "runs.json").read_text())
    assert saved == json.loads(json.dumps(rows))
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "plot.pdf").read_bytes()[:4] == b"%PDF"
    assert (out / "summary.csv").read_text().startswith("scenario,method,text,seeds")


def test_a_rerun_keeps_finished_runs_and_reruns_failed_or_changed_ones(
    experiments, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    calls = []
    real_train = metarec.pipeline.train

    def train(cfg, task_cache=None):
        calls.append((cfg.learner.name, cfg.seed))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real_train(cfg, task_cache)

    monkeypatch.setattr(metarec.pipeline, "train", train)
    first, _, _ = rep.reproduce("synthetic", seeds=2, methods=["mean"], overrides=FAST, out=out,
                                progress=False, **HELDOUT)  # fmt: skip
    assert calls == [("mean", 0), ("mean", 1)]
    second, _, _ = rep.reproduce("synthetic", seeds=2, methods=["mean"], overrides=FAST,
                                 out=out, progress=False, **HELDOUT)  # fmt: skip
    assert calls[2:] == [("mean", 1)]  # only the failed run ran again
    assert [r for r in second if r["seed"] == 0] == [r for r in first if r["seed"] == 0]
    rep.reproduce("synthetic", seeds=2, methods=["mean"], out=out, progress=False,
                  overrides=[*FAST, "learner.kind=item"], **HELDOUT)  # fmt: skip
    assert calls[3:] == [("mean", 0), ("mean", 1)]  # another config: both again


def test_a_run_of_some_methods_keeps_the_other_methods_rows(experiments, tmp_path):
    # a reproduction in parts (cheap rows, then the slow ones) must not drop the first part
    out = tmp_path / "out"
    first, _, _ = rep.reproduce("synthetic", seeds=1, methods=["mean"], overrides=FAST, out=out,
                                progress=False, **HELDOUT)  # fmt: skip
    rows, table, _ = rep.reproduce("synthetic", seeds=1, methods=["ridge"], overrides=FAST,
                                   out=out, texts=["none"], progress=False, **HELDOUT)  # fmt: skip
    assert rows[: len(first)] == first and {row["method"] for row in rows} == {"mean", "ridge"}
    assert rep.load_rows(out) == rows
    assert "| mean |" in table and "| ridge |" in table


def test_two_worker_processes_give_the_same_numbers_as_one(experiments, tmp_path):
    args = {"seeds": 1, "methods": ["ridge"], "texts": ["none"], "overrides": FAST,
            "progress": False, **HELDOUT}  # fmt: skip
    one, _, _ = rep.reproduce("synthetic", out=tmp_path / "one", jobs=1, **args)
    two, _, _ = rep.reproduce("synthetic", out=tmp_path / "two", jobs=2, **args)
    assert [r["mae"] for r in one] == [r["mae"] for r in two]


def test_results_command_rewrites_the_table_from_the_rows(experiments, tmp_path, capsys):
    out = tmp_path / "results" / "synthetic"
    rep.reproduce(
        "synthetic", seeds=1, methods=["mean"], overrides=FAST, out=out, progress=False, **HELDOUT
    )
    (out / "table.md").write_text("stale\n")
    assert main(["results", str(out), "--dataset", "synthetic"]) == 0
    assert "| warm | mean | none |" in (out / "table.md").read_text()
    assert main(["results", str(tmp_path / "nothing")]) == 2
    assert "runs.json is missing or empty" in capsys.readouterr().err


def test_cached_tasks_give_the_same_numbers_as_fresh_ones(tmp_path):
    """A worker prepares each run's tasks once (a ``TaskCache`` passed to ``train``); reusing
    them after other runs must change no number."""
    from metarec.config.load import load_config

    def run(name, text="none", seed=0, cache=None):
        overrides = [*FAST, f"learner.name={name}", f"item.text={text}", f"seed={seed}",
                     f"output_dir={tmp_path}"]  # fmt: skip
        return metarec.pipeline.train(load_config(None, overrides), task_cache=cache).metrics

    fresh = run("maml", seed=1)
    cache = TaskCache()
    run("maml", seed=0, cache=cache)
    run("ridge", text="join", cache=cache)  # fills the cache's second entry
    cfg = load_config(None, [*FAST, "item.text=none"])
    kept = cache.get(cfg, lambda cfg: pytest.fail("prepared again"))
    cached = run("maml", seed=1, cache=cache)
    assert len(cache) == 2 and cache.get(cfg, lambda cfg: None) is kept
    assert cached == fresh
    run("ridge", text="replace", cache=cache)  # a third variant evicts the oldest
    assert len(cache) == 2


def test_every_warm_pass_and_data_seed_is_planned_and_scored(experiments, tmp_path):
    (experiments / "paper.yaml").write_text(
        "name: p\ndata:\n  name: synthetic\ntask:\n  warm: [heldout, seen]\n"
        "item:\n  text: none\nlearner:\n  name: ridge\n"
    )
    runs = spec.plan(experiments, ["ridge", "paper", "textsim"], seeds=2,
                    warms=spec.WARM_PASSES, data_seeds=True)  # fmt: skip
    assert {(r.method, r.text, r.warm) for r in runs} == {
        ("ridge", "none", "heldout,seen"), ("ridge", "join", "heldout,seen"),
        ("ridge", "none", "warmup"), ("paper", "none", "heldout,seen"),
        ("textsim", "replace", "heldout,seen"), ("textsim", "replace", "warmup")}  # fmt: skip
    warmup = next(r for r in runs if r.warm == "warmup" and r.seed == 1)
    settings = spec.run_overrides(warmup, [], tmp_path)
    assert {"task.warm=[warmup]", "task.cold=false", "data.seed=1", "seed=1"} <= set(settings)
    rows, table, _ = rep.reproduce("synthetic", seeds=2, methods=["mean", "ridge"], texts=["none"],
                                   overrides=FAST, out=tmp_path / "out", progress=False,
                                   data_seeds=True)  # fmt: skip
    scored = {(r["method"], r["warm"], r["scenario"]) for r in rows}
    assert ("ridge", "warmup", "warm_warmup") in scored and (
        "ridge",
        "heldout,seen",
        "warm_seen",
    ) in scored
    assert not {s for m, w, s in scored if w == "warmup"} - {"warm_warmup"}
    for scenario in ("| warm_seen | ridge |", "| warm_warmup | mean |", "| new_item | ridge |"):
        assert scenario in table
    # data.seed follows the seed: the held-out users differ between seeds.
    warm = [r for r in rows if r["scenario"] == "warm" and r["method"] == "mean"]
    users = [read_per_task(Path(r["run_dir"]) / PER_TASK_FILE)["warm"]["task"] for r in warm]
    assert len(users) == 2 and users[0] != users[1]


def _fake_runs(
    folder: Path, maes: dict[str, list[np.ndarray]], tasks=None, metrics=RATING
) -> list[dict]:
    """runs.json rows and per-task files of methods with the given per-task values of every
    one of ``metrics`` per seed."""
    rows = []
    for method, seeds in maes.items():
        for seed, values in enumerate(seeds):
            run_dir = folder / f"{method}-{seed}"
            ids = tasks or [f"u{k}" for k in range(len(values))]
            columns = {name: torch.tensor(values) for name in metrics}
            write_per_task(run_dir / PER_TASK_FILE, {"new_user": columns},
                           {"new_user": ids})  # fmt: skip
            rows.append({"method": method, "text": "none", "seed": seed, "warm": "heldout",
                         "scenario": "new_user", "status": "ok", "seconds": 1.0,
                         "run_dir": str(run_dir), **{m: float(np.mean(values))
                                                     for m in metrics}})  # fmt: skip
    return rows


def test_only_a_paired_significant_margin_is_marked_and_stated(tmp_path):
    rng = np.random.default_rng(0)
    base = [rng.uniform(0.3, 1.5, 600) for _ in range(3)]
    maes = {"shrunk": base,
            "good": [tasks - 0.03 + rng.normal(0, 0.02, 600) for tasks in base],
            "noise": [tasks + rng.normal(0, 0.05, 600) for tasks in base]}  # fmt: skip
    summary = aggregate(_fake_runs(tmp_path, maes), RATING)
    entry = {e["method"]: e for e in summary}
    assert wins(entry["good"], "vs_reference") and wins(entry["good"], "vs_best_other")
    assert not wins(entry["noise"], "vs_reference") and entry["noise"]["vs_reference"]["p"] > 0.01
    lines = table_lines(summary, {}, RATING)
    assert any("| good |" in line and "▲★" in line for line in lines)
    assert not any("| noise |" in line and ("▲" in line or "▼" in line) for line in lines)
    (finding,) = findings(summary, {})
    assert "best `good`" in finding and "a significant margin" in finding
    assert "Significantly better than the bias baseline `shrunk` (p < 0.01): `good`." in finding


def test_a_ranking_table_ranks_and_tests_its_primary_metric_higher_first(tmp_path):
    # NDCG@10 is higher-is-better: a method 0.03 above the reference on every task wins (▲),
    # one 0.03 below loses (▼), and the rows are ordered best (highest) first.
    rng = np.random.default_rng(3)
    base = [rng.uniform(0.1, 0.6, 500) for _ in range(3)]
    values = {"mean": base,
              "up": [tasks + 0.03 + rng.normal(0, 0.01, 500) for tasks in base],
              "down": [tasks - 0.03 + rng.normal(0, 0.01, 500) for tasks in base]}  # fmt: skip
    summary = aggregate(_fake_runs(tmp_path, values, metrics=RANKING), RANKING)
    entry = {e["method"]: e for e in summary}
    assert entry["up"]["vs_reference"]["diff"] == pytest.approx(0.03, abs=0.005)
    assert wins(entry["up"], "vs_reference") and not wins(entry["down"], "vs_reference")
    lines = [line for line in table_lines(summary, {}, RANKING) if "| new_user |" in line]
    assert [line.split(" | ")[1] for line in lines] == ["up", "mean", "down"]
    assert (
        "▲★" in lines[0]
        and "▼" in lines[2]
        and "Δ nDCG@10 vs bias baseline" in "".join(table_lines(summary, {}, RANKING)[:1])
    )
    (finding,) = findings(summary, {})
    assert "best `up` nDCG@10" in finding and "above the bias baseline `mean`" in finding


def test_no_learner_below_the_baseline_is_said_plainly(tmp_path):
    rng = np.random.default_rng(1)
    base = [rng.uniform(0.3, 1.5, 300) for _ in range(2)]
    worse = [tasks + 0.02 + rng.normal(0, 0.01, 300) for tasks in base]
    (finding,) = findings(
        aggregate(_fake_runs(tmp_path, {"shrunk": base, "maml": worse}), RATING), {}
    )
    assert "No learner beats the bias baseline `shrunk` with p < 0.01" in finding


def test_runs_on_different_tasks_are_not_compared(tmp_path):
    rng = np.random.default_rng(2)
    rows = _fake_runs(tmp_path / "a", {"shrunk": [rng.uniform(0, 1, 5)]})
    rows += _fake_runs(tmp_path / "b", {"maml": [rng.uniform(0, 1, 5)]},
                       tasks=["x0", "x1", "x2", "x3", "x4"])  # fmt: skip
    with pytest.raises(DataError, match="different tasks for seed 0"):
        aggregate(rows, RATING)
