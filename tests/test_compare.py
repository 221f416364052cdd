"""The comparison harness: one table over methods, a failed method reported, never dropped."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]


def _compare():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_failed_method_is_a_failed_row(tmp_path):
    compare = _compare()
    overrides = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    rows = compare.run_all("synthetic", ["no-such-method", "maml"], overrides, tmp_path)
    (failed,) = [row for row in rows if row["method"] == "no-such-method"]
    assert failed["status"].startswith("failed: ConfigError") and "trace" not in failed
    ok = [row for row in rows if row["method"] == "maml"]
    assert len(ok) == 4 and all(row["status"] == "ok" for row in ok)
    table = compare.markdown(rows, "t")
    assert "| no-such-method | failed | failed | failed | failed |" in table
    maml_warm = next(row for row in ok if row["scenario"] == "warm")
    assert f"{maml_warm['mae']:.4f} / {maml_warm['ndcg@3']:.4f}" in table
    # The rows of results.json as before the reproduce runner ran them: no run folder.
    assert list(ok[0])[:4] == ["method", "scenario", "status", "seconds"]
    assert not {"val_mae", "run_dir"} & set(ok[0])
