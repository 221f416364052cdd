"""``metarec reproduce`` grids (TALLRec's 16 / 64 / 256 samples) and the pooled-AUC report."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from metarec import paths
from metarec import reproduce as rep
from metarec.catalog import DATASETS
from metarec.metrics.per_task import read_per_task, write_per_task
from metarec.metrics.pooled import paired_auc_test, pooled_auc, pooled_auc_estimate
from metarec.paths import experiments_folder
from metarec.report.pooled import aggregate_pooled, write_pooled_report
from metarec.report.pooled_table import grid_value, pooled_table_lines
from metarec.report.reproduction import write_report
from metarec.reproduce import spec
from metarec.reproduce.spec import grid_points
from tests.conftest import SMALL

FAST = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
TALLREC = DATASETS.get("tallrec-ml100k").paper


def test_grid_points_are_the_product_of_the_keys_values():
    assert grid_points(None) == [""]
    assert grid_points({"a": (1, 2), "b": ("x", "y")}) == [
        "a=1 b=x",
        "a=1 b=y",
        "a=2 b=x",
        "a=2 b=y",
    ]
    assert grid_value("a=1 b=x", "b") == "x" and grid_value("a=1", "c") is None
    with pytest.raises(spec.ConfigError, match="grid key 'a'"):
        grid_points({"a": ()})


def test_tallrec_rows_run_at_every_sample_size_in_one_warm_pass():
    folder = experiments_folder("tallrec-ml100k")
    source = spec.dataset_of(folder)
    assert source is DATASETS.get("tallrec-ml100k")
    sizes = source.grid["data.tallrec.train_samples"]
    assert sizes == (16, 64, 256)
    runs = spec.plan(
        folder,
        None,
        3,
        spec.TEXTS,
        source.warm_passes,
        True,
        source.grid,
    )
    methods = {run.method for run in runs}
    assert {"mean", "history", "maml", "attention", "text_full", "text_lora"} <= methods
    for method in methods:  # one item-text variant each (the files set it), 3 sizes x 3 seeds
        mine = [run for run in runs if run.method == method]
        assert len(mine) == 9 and {run.warm for run in mine} == {"heldout"}
        assert {run.grid for run in mine} == {f"data.tallrec.train_samples={n}" for n in sizes}
    settings = spec.run_overrides(runs[0], ["data.root=x"], folder)
    assert settings[:2] == ["data.root=x", runs[0].grid] and "data.seed=0" in settings
    # melu-ml1m has no grid: its plan is unchanged.
    melu = spec.plan(
        experiments_folder("melu-ml1m"),
        ["mean"],
        2,
        spec.TEXTS,
        spec.WARM_PASSES,
        False,
        spec.dataset_of(experiments_folder("melu-ml1m")).grid,
    )
    assert [(r.grid, r.warm, r.seed) for r in melu] == [
        ("", w, s) for w in spec.WARM_PASSES for s in (0, 1)
    ]


def test_a_grid_run_names_its_point_and_a_rerun_skips_it(tmp_path, monkeypatch):
    folder = tmp_path / "experiments" / "synthetic"
    folder.mkdir(parents=True)
    shutil.copy(paths.experiments_root() / "synthetic" / "mean.yaml", folder)
    if (paths.experiments_root() / "synthetic" / "base.yaml").exists():
        shutil.copy(paths.experiments_root() / "synthetic" / "base.yaml", folder)
    monkeypatch.setattr(paths, "experiments_root", lambda: folder.parent)
    grid = {"data.synthetic.n_items": (150, 200)}
    monkeypatch.setattr(DATASETS.get("synthetic"), "grid", grid)
    out = tmp_path / "out"
    rows, _, _ = rep.reproduce(
        "synthetic", seeds=1, overrides=FAST, out=out, progress=False, warms=["heldout"]
    )
    grids = {row["grid"] for row in rows}
    assert grids == {"data.synthetic.n_items=150", "data.synthetic.n_items=200"}
    header = (out / "runs.csv").read_text().splitlines()[0]
    assert header.startswith("method,grid,text,seed")
    saved = json.loads((out / "runs.json").read_text())
    again, _, _ = rep.reproduce(
        "synthetic", seeds=1, overrides=FAST, out=out, progress=False, warms=["heldout"]
    )
    assert [row["run_dir"] for row in again] == [row["run_dir"] for row in saved]


def fake_runs(tmp_path, methods: dict[str, tuple[str, bool]], n_seeds: int = 2) -> list[dict]:
    """Rows of fake pooled runs at two grid points: per method its learner and extra-data flag;
    every seed scores the same 60 samples of 6 users, a method's scores more or less noisy."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=60).astype(float)
    tasks = [f"{user}:{item}" for user in range(6) for item in range(10)]
    rows = []
    for grid in ("data.tallrec.train_samples=16", "data.tallrec.train_samples=64"):
        for noise, (method, (learner, extra)) in enumerate(methods.items(), start=1):
            for seed in range(n_seeds):
                run_dir = tmp_path / f"{method}-{grid[-2:]}-{seed}"
                run_dir.mkdir()
                scores = labels + noise * rng.normal(size=60)
                write_per_task(
                    run_dir / "per_task.csv.gz",
                    {
                        "warm": {
                            "mae": torch.tensor(np.abs(scores - labels)),
                            "score": torch.tensor(scores),
                            "label": torch.tensor(labels),
                        }
                    },
                    {"warm": tasks},
                )
                config = {"learner": {"name": learner}, "data": {"tallrec": {"extra": extra}}}
                (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
                rows.append(
                    {
                        "method": method,
                        "grid": grid,
                        "text": "none",
                        "seed": seed,
                        "scenario": "warm",
                        "status": "ok",
                        "seconds": 1.0,
                        "mae": 0.4,
                        "run_dir": str(run_dir),
                    }
                )
    return rows


def test_the_pooled_report_reads_scores_and_labels_and_labels_extra_data(tmp_path):
    methods = {
        "history": ("mean", False),
        "extra": ("maml", True),
        "net": ("global", False),
        "bias": ("mean", False),
    }
    rows = fake_runs(tmp_path, methods)
    rows.append(
        {
            "method": "net",
            "grid": "data.tallrec.train_samples=64",
            "text": "none",
            "seed": 2,
            "status": "failed: RuntimeError: boom",
        }
    )
    summary = aggregate_pooled(rows, n_boot=200)
    by_key = {(e["grid"][-2:], e["method"]): e for e in summary}
    # The estimate is the mean over seeds of each seed's pooled AUC of its per-task columns.
    history = [r for r in rows if r["method"] == "history" and r["grid"].endswith("16")]
    expected, scores, labels, users = [], [], [], []
    for row in history:
        columns = read_per_task(f"{row['run_dir']}/per_task.csv.gz")["warm"]
        expected.append(pooled_auc(columns["score"], columns["label"]))
        scores.append(np.array(columns["score"]))
        labels.append(np.array(columns["label"]))
        users.append(np.array([t.split(":")[0] for t in columns["task"]]))
    entry = by_key[("16", "history")]
    assert entry["auc"] == pytest.approx(np.mean(expected))
    interval = pooled_auc_estimate(scores, labels, users, shared=True, n_boot=200)
    assert (entry["auc_low"], entry["auc_high"]) == pytest.approx((interval.low, interval.high))
    assert entry["test_users"] == 6 and entry["test_samples"] == 60
    # The reference: the best no-training row without extra data; extra data is labelled.
    assert entry["reference"] == "history" and "vs_reference" not in entry
    assert by_key[("16", "extra")]["extra_data"] and not by_key[("16", "net")]["extra_data"]
    test = by_key[("16", "net")]["vs_reference"]
    net = [r for r in rows if r["method"] == "net" and r["grid"].endswith("16")]
    net_scores = [
        np.array(read_per_task(f"{r['run_dir']}/per_task.csv.gz")["warm"]["score"]) for r in net
    ]
    expected_test = paired_auc_test(net_scores, scores, labels, users, shared=True, n_boot=200)
    assert test["diff"] == pytest.approx(expected_test.diff) and test["p"] == expected_test.p
    assert by_key[("64", "net")]["failed"] == 1 and by_key[("64", "net")]["seeds"] == 2
    lines = pooled_table_lines(summary, TALLREC)
    assert any(line.startswith("| 16 | TALLRec (paper) | – | few-shot | 67.24 |") for line in lines)
    assert any("| 64 | extra | none | few-shot + **extra**" in line for line in lines)
    assert any(
        "| 16 | history | none | few-shot |" in line and "reference" in line for line in lines
    )
    table = write_pooled_report(tmp_path, rows, TALLREC, "fake")
    assert "- **16 samples**: best `history`" in table and "6 users" in table
    assert "net (data.tallrec.train_samples=64): failed: RuntimeError: boom" in table
    summary_csv = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert summary_csv[0]["auc"] and summary_csv[0]["extra_data"] in ("True", "False")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    # write_report sends pooled rows here; it is the same table.
    assert write_report(tmp_path, rows, "tallrec-ml100k", "fake") == table
