"""`metarec train` on the real MeLU MovieLens-1M copy (skipped with the reason when absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from metarec.cli import main

MELU_DIR = Path(
    os.environ.get("METAREC_MELU_DIR", Path(__file__).parents[1] / "../shared/data/melu-ml1m")
).resolve()

# MeLU's protocol on its states: users with 13..100 ratings (PROTOCOLS.md).
PAPER_TASKS = {"new_user": 668, "new_item": 2863, "new_user_item": 723}
WARM_TASKS = 2653


@pytest.mark.integration
def test_train_on_real_melu_data(tmp_path):
    if (
        not (MELU_DIR / "warm_state.json.gz").exists()
        and not (MELU_DIR / "warm_state.json").exists()
    ):
        pytest.skip(f"MeLU data not found in {MELU_DIR} (set METAREC_MELU_DIR)")
    args = [
        "train",
        "experiments/melu_ml1m/maml.yaml",
        f"data.root={MELU_DIR}",
        f"output_dir={tmp_path}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.progress_bar=false",
    ]
    assert main(args) == 0
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for scenario, n_tasks in PAPER_TASKS.items():
        assert metrics[scenario]["n_tasks"] == n_tasks, scenario
    # Warm: a seeded 10% of the 2,653 warm tasks is held out as the warm test scenario.
    assert metrics["warm"]["n_tasks"] == round(0.1 * WARM_TASKS)
    for values in metrics.values():
        assert 0.5 < values["mae"] < 1.5
