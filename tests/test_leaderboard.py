"""The leaderboard: methods ranked per dataset and scenario in each metric's direction, the
verdicts against the bias baseline from the paired tests, where each method wins, and a real
(tiny) run over two datasets, one of them without data."""

from __future__ import annotations

import pytest

from metarec.catalog import LEARNERS
from metarec.errors import ConfigError
from metarec.paths import datasets_found
from metarec.report.leaderboard import board, board_lines, coverage_lines, simple_lines, wins_lines
from metarec.reproduce.leaderboard import (
    coverage_reasons,
    leaderboard,
    learners_of,
)


def _entry(method, scenario, primary, value, diff=None, p=None, text="none"):
    entry = {"method": method, "text": text, "scenario": scenario, "primary": primary,
             primary: value, f"{primary}_low": value - 0.01, f"{primary}_high": value + 0.01,
             "seeds": 3, "seconds": 12.0, "reference": "shrunk"}  # fmt: skip
    if diff is not None:
        entry["vs_reference"] = {"diff": diff, "p": p}
    return entry


def test_rows_are_ranked_in_the_metrics_direction_with_verdicts_from_the_tests():
    rating = [_entry("shrunk", "new_item", "mae", 0.88),
              _entry("clcrec", "new_item", "mae", 0.87, diff=-0.01, p=0.001, text="join"),
              _entry("mwuf", "new_item", "mae", 0.93, diff=0.05, p=0.0001),
              _entry("aldi", "new_item", "mae", 0.879, diff=-0.001, p=0.4)]  # fmt: skip
    found = board("melu-ml1m", rating)
    ((_, metric, entries),) = found.groups
    assert metric == "mae"
    assert [e["method"] for e in entries] == ["clcrec", "aldi", "shrunk", "mwuf"]
    rows = [line for line in board_lines(found) if line.startswith("| ") and "rank" not in line]
    verdicts = {row.split(" | ")[1]: row.split(" | ")[4] for row in rows}
    assert verdicts == {"clcrec+join": "▲", "aldi": "–", "shrunk": "ref", "mwuf": "▼"}
    # NDCG is higher-is-better: the highest ranks first, a positive difference is a win.
    ranking = [_entry("mean", "new_item", "ndcg@10", 0.05),
               _entry("clcrec", "new_item", "ndcg@10", 0.15, diff=0.10, p=0.0001)]  # fmt: skip
    ranked = board("amazon-unisrec", ranking)
    assert [e["method"] for e in ranked.groups[0][2]] == ["clcrec", "mean"]
    wins = "\n".join(wins_lines([found, ranked]))
    assert "| clcrec+join | melu-ml1m new_item | melu-ml1m new_item | – |" in wins
    assert "| clcrec | amazon-unisrec new_item | amazon-unisrec new_item | – |" in wins
    assert "| mwuf | – | – | melu-ml1m new_item |" in wins


def test_a_tiny_leaderboard_runs_resumes_and_names_missing_data(tmp_path):
    settings = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    roots = {"melu-ml1m": str(tmp_path / "nothing")}
    args = {"seeds": 2, "out": tmp_path / "board", "overrides": settings, "progress": False,
            "methods": ["mean", "shrunk"]}  # fmt: skip
    text, _ = leaderboard(["synthetic", "melu-ml1m"], roots, **args)
    assert f"- melu-ml1m: no data at {tmp_path / 'nothing'}" in text
    assert "## synthetic" in text and "**new users** (MAE, lower is better)" in text
    assert (tmp_path / "board" / "synthetic" / "runs.json").is_file()
    # Resumed: the finished runs are reused and give the same page (but its wall time).
    runs = sorted((tmp_path / "board" / "synthetic" / "runs").iterdir())
    again, _ = leaderboard(["synthetic", "melu-ml1m"], roots, **args)
    assert sorted((tmp_path / "board" / "synthetic" / "runs").iterdir()) == runs  # none re-run
    assert again[again.index("## synthetic") :] == text[text.index("## synthetic") :]
    # The page lists each dataset's call: its runs (2 methods x 2 seeds) and methods.
    assert "| synthetic | 4 |" in text and "`--methods mean,shrunk --seeds 2 --set" in text
    # The resumed call ran nothing: its row says 0 runs, and the total counts 4.
    assert "| synthetic | 0 |" in again


def test_the_simple_baselines_rank_is_stated_per_scenario():
    rows = [_entry("shrunk", "new_user", "mae", 0.75),
            _entry("maml", "new_user", "mae", 0.74, diff=-0.01, p=0.2),
            _entry("melu", "new_user", "mae", 0.80, diff=0.05, p=0.0001),
            _entry("mf", "new_user", "mae", 0.76, diff=0.01, p=0.3)]  # fmt: skip
    learner_of = {("d", "shrunk"): "mean", ("d", "mf"): "mf", ("d", "maml"): "maml",
                  ("d", "melu"): "melu"}  # fmt: skip
    lines = simple_lines([board("d", rows)], learner_of)
    # shrunk (.75) is second of four, behind maml (.74), which is not significantly better.
    assert "| d | new users | shrunk | 2 of 4 | maml | – |" in lines


def test_coverage_marks_each_learner_run_excused_or_not_run():
    lines = coverage_lines(["a", "b"], ["maml", "textsim"], {"a": {"maml", "textsim"},
                           "b": {"maml"}}, {"b": {"textsim": "no text", "full": "too slow"}},
                           {"b": ["full"], "a": []})  # fmt: skip
    assert "| maml | ✓ | ✓ |" in lines and "| textsim | ✓ | n/a (1) |" in lines
    assert "1. b, textsim: no text" in lines and "- b `full`: too slow" in lines
    bare = coverage_lines(["a"], ["maml"], {}, {})
    assert "| maml | **not run** |" in bare


def test_every_learner_has_an_experiment_on_every_dataset_or_a_stated_reason():
    reasons = coverage_reasons()
    for dataset in datasets_found(None):
        have = set(learners_of(dataset).values())
        for learner in LEARNERS.names():
            assert learner in have or learner in reasons.get(dataset, {}), (dataset, learner)


def test_a_coverage_file_naming_nothing_real_is_refused(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.yaml").write_text("learner:\n  name: maml\n")
    (tmp_path / "coverage.yaml").write_text("toy:\n  nosuch: why\n")
    with pytest.raises(ConfigError, match="'toy.nosuch' is neither a learner nor"):
        coverage_reasons(tmp_path)
    (tmp_path / "coverage.yaml").write_text("other:\n  maml: why\n")
    with pytest.raises(ConfigError, match="'other' is not a dataset with experiments"):
        coverage_reasons(tmp_path)
    (tmp_path / "coverage.yaml").write_text("toy:\n  a: too slow\n  textsim: no text\n")
    assert coverage_reasons(tmp_path) == {"toy": {"a": "too slow", "textsim": "no text"}}
