"""amazon-unisrec's constant user feature, data.amazon.max_eval_tasks, and the text-encoder
harness (benchmarks/text_encoders.py) writing its rows and summary on generated files with a
tiny BERT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metarec.build import build_learner

from .conftest import TINY_WORDS, make_tiny_bert
from .test_amazon import build, make_sequences, unisrec_files, write_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import text_encoders  # noqa: E402  (benchmarks/ is no package)

from metarec.config.load import load_config  # noqa: E402


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_files(tmp_path_factory.mktemp("amazon"), unisrec_files(make_sequences()))


def test_unseen_users_get_the_same_prediction(root):
    """No user id: two held-out users' predictions for the same items are the same (they
    differ only through what a learner adapts on their support sets)."""
    tasks = build(root, "task.warm=[heldout]", "learner.name=global")
    cfg = load_config(None, ["learner.name=global"])
    learner = build_learner(cfg, tasks)
    test_users = tasks.test["warm"].user[:2]
    items = tasks.test["warm"].query_item[:1]
    with torch.no_grad():
        first, second = (learner.net(user.view(1, 1), items) for user in test_users)
    assert test_users[0] != test_users[1]
    torch.testing.assert_close(first, second)


def test_max_eval_tasks_keeps_a_seeded_sample(root):
    full = build(root, "task.warm=[heldout]")
    capped = build(root, "task.warm=[heldout]", "data.amazon.max_eval_tasks=5")
    again = build(root, "task.warm=[heldout]", "data.amazon.max_eval_tasks=5")
    assert len(capped.val.user_ids) == 5 and len(capped.train.user_ids) == len(full.train.user_ids)
    for scenario, task_set in capped.test.items():
        assert len(task_set.user_ids) == min(5, len(full.test[scenario].user_ids))
        assert set(task_set.user_ids) <= set(full.test[scenario].user_ids)
        assert task_set.user_ids == again.test[scenario].user_ids
        assert torch.equal(task_set.query_item, again.test[scenario].query_item)


def test_device_overrides_reach_the_config():
    overrides = text_encoders.device_overrides("cuda", "bf16-mixed", "some/model")
    cfg = load_config(text_encoders.EXPERIMENTS / "lora_global.yaml", overrides)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    assert (cfg.encoder.dtype, cfg.encoder.model, cfg.encoder.device) == (
        "bfloat16", "some/model", "cuda")  # fmt: skip
    assert text_encoders.device_overrides("cpu", None, None) == []


def test_harness_writes_rows_summary_table_and_plot(root, tmp_path):
    """Three rows (ID-only, frozen text, LoRA encoder tuned per task) on a tiny BERT; the
    per-run cost and per-task metrics, then the summary, CSV, JSON, Markdown and PNG."""
    model = make_tiny_bert(tmp_path / "bert", TINY_WORDS)
    overrides = [f"data.root={root}", f"encoder.model={model}",
                 f"encoder.cache_dir={tmp_path / 'cache'}", "data.amazon.negatives=20",
                 "data.amazon.new_item_fraction=0.2", "data.val_fraction=0.15",
                 "data.test_fraction=0.15", "data.amazon.max_eval_tasks=8",
                 "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                 f"output_dir={tmp_path / 'runs'}"]  # fmt: skip
    runs = []
    for row in ("global_id", "frozen_global", "lora_finetune"):
        found = text_encoders.run_one(text_encoders.EXPERIMENTS / f"{row}.yaml", 0, overrides)
        runs.append({"row": row, "seed": 0, "status": "ok", **found})
    runs.append({"row": "full_global", "seed": 0, "status": "failed: out of memory"})
    lora = runs[2]
    assert lora["trainable_params"] > 0
    assert lora["peak_mb"] > 0 and lora["seconds_per_task"] > 0
    assert lora["test_tasks"] == sum(len(v["hr@10"]) for v in lora["per_task"].values())
    summary = text_encoders.write(tmp_path, runs, "tiny")
    assert summary["reference"] == {"warm": "global_id", "new_item": "global_id"}
    cell = summary["rows"]["lora_finetune"]["scenarios"]["new_item"]
    assert cell["ndcg@10"]["low"] <= cell["ndcg@10"]["mean"] <= cell["ndcg@10"]["high"]
    assert 0 < cell["ndcg@10 vs global_id"]["p"] <= 1
    assert "full_global" not in summary["rows"]  # a failed run is in the runs, not the table
    saved = json.loads((tmp_path / "text_encoders.json").read_text())
    assert [run["status"] for run in saved["runs"]][-1].startswith("failed")
    table = (tmp_path / "text_encoders.md").read_text()
    assert "| lora_finetune | text | lora | LoRA per task | 0 |" in table
    csv_lines = (tmp_path / "text_encoders.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("row,seed,status,trainable_params")
    assert (tmp_path / "text_encoders.png").stat().st_size > 1000


def test_per_task_tuning_of_a_lora_encoder_tunes_its_adapters_not_its_weights(root, tmp_path):
    """``finetune`` with ``encoder.trainable=lora`` (the lora_finetune row) tunes per task every
    weight that requires a gradient: in the encoder only its LoRA adapters, beside the
    projection and decision layers. The ``lora`` learner adds adapters on the decision layers
    and tunes those and the encoder's (every ``lora_A``/``lora_B``)."""
    from metarec.build import prepare_tasks

    from .test_amazon import config

    model = make_tiny_bert(tmp_path / "bert", TINY_WORDS)
    settings = ["item.text=replace", "encoder.trainable=lora", f"encoder.model={model}",
                f"encoder.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    cfg = config(root, *settings, "learner.name=finetune")
    learner = build_learner(cfg, prepare_tasks(cfg))
    fast = learner.tuning_weights()[1].fast
    in_encoder = [name for name in fast if ".encoder." in name]
    assert in_encoder and all("lora_" in name for name in in_encoder)
    assert any(name.startswith("decision.") for name in fast)
    frozen = learner.tuning_weights()[1].frozen
    assert any(".encoder." in name and "lora_" not in name for name in frozen)
    cfg = config(root, *settings, "learner.name=lora")
    lora = build_learner(cfg, prepare_tasks(cfg))
    fast = lora.tuning_weights()[1].fast
    assert any(".encoder." in name for name in fast) and any("decision" in name for name in fast)
    assert all("lora_" in name for name in fast)


def test_full_ranking_reports_every_item_ranking_and_tests_against_the_best_id_row(root, tmp_path):
    """``--full-ranking``: the runs carry full HR@10 / NDCG@10 per task beside the sampled
    ones, and the summary, table and paired test use the full ones (the best ID-only row is
    picked on full NDCG@10)."""
    overrides = [f"data.root={root}", "task.full_ranking=true", "data.amazon.negatives=20",
                 "data.amazon.new_item_fraction=0.2", "data.val_fraction=0.15",
                 "data.test_fraction=0.15", "trainer.max_epochs=1",
                 f"output_dir={tmp_path / 'runs'}"]  # fmt: skip
    runs = []
    for row in ("mean", "global_id"):
        for seed in (0, 1):
            found = text_encoders.run_one(text_encoders.EXPERIMENTS / f"{row}.yaml", seed,
                                          overrides)  # fmt: skip
            runs.append({"row": row, "seed": seed, "status": "ok", **found})
    columns = runs[0]["per_task"]["warm"]
    assert set(columns) == {"hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10"}
    summary = text_encoders.write(tmp_path, runs, "full", text_encoders.FULL)
    full = {row: np.mean([np.mean(run["per_task"]["warm"]["full_ndcg@10"]) for run in runs
                          if run["row"] == row]) for row in ("mean", "global_id")}  # fmt: skip
    sampled = {row: np.mean([np.mean(run["per_task"]["warm"]["ndcg@10"]) for run in runs
                             if run["row"] == row]) for row in ("mean", "global_id")}  # fmt: skip
    assert summary["reference"]["warm"] == max(full, key=full.get)
    worse = min(full, key=full.get)
    cell = summary["rows"][worse]["scenarios"]["warm"]
    best = max(full, key=full.get)
    assert set(cell) == {"full_hr@10", "full_ndcg@10", f"full_hr@10 vs {best}",
                         f"full_ndcg@10 vs {best}"}  # fmt: skip
    assert cell["full_ndcg@10"]["mean"] == pytest.approx(full[worse])
    assert cell["full_ndcg@10"]["mean"] != pytest.approx(sampled[worse])
    table = (tmp_path / "text_encoders.md").read_text()
    assert "full ranking" in table and "| warm full HR@10 | warm full NDCG@10 |" in table
    header = (tmp_path / "text_encoders.csv").read_text().splitlines()[0]
    assert header.endswith(
        "warm/full_hr@10,warm/full_ndcg@10,new_item/full_hr@10,new_item/full_ndcg@10"
    )


def test_full_against_lora_is_paired_per_seed_with_cost_ratios(tmp_path):
    """The full-vs-LoRA section: per scenario the paired NDCG@10 difference (full minus LoRA)
    on the seeds both ran, and the cost ratios; a pair with a side missing is left out."""
    rng = np.random.default_rng(0)

    def run(row, seed, values, params, peak, per_task_s):
        per_task = {s: {"hr@10": list(v), "ndcg@10": list(v)} for s, v in values.items()}
        return {"row": row, "seed": seed, "status": "ok", "trainable_params": params,
                "peak_mb": peak, "fit_seconds": 1.0, "seconds_per_task": per_task_s,
                "per_task": per_task}  # fmt: skip

    runs = []
    for seed in (0, 1, 2):
        lora = {s: rng.uniform(0, 0.5, 200) for s in text_encoders.SCENARIOS}
        full = {"warm": lora["warm"], "new_item": lora["new_item"] + 0.1}
        runs.append(run("lora_finetune", seed, lora, 100, 500.0, 2.0))
        if seed < 2:  # full tuning ran on seeds 0 and 1 only
            runs.append(run("full_finetune", seed, full, 10_000, 1000.0, 3.0))
    runs.append(run("full_global", 0, lora, 10_000, 1000.0, 3.0))  # no lora_global: no pair
    # A meta-learned head against per-task fine-tuning, a second pair (no frozen_anil: absent).
    runs.append(run("frozen_finetune", 0, lora, 50, 400.0, 1.0))
    runs.append(run("frozen_maml", 0, {s: v - 0.05 for s, v in lora.items()}, 50, 400.0, 0.5))
    summary = text_encoders.write(tmp_path, runs, "pairs")
    pair, meta = summary["versus"]
    assert (meta["first"], meta["second"]) == ("frozen_maml", "frozen_finetune")
    assert meta["tests"]["warm"]["seeds"] == [0]
    assert meta["tests"]["warm"]["diff"] == pytest.approx(-0.05)
    assert meta["tests"]["warm"]["p"] < 0.01
    assert meta["ratio"]["seconds_per_task"] == 0.5
    assert (pair["first"], pair["second"]) == ("full_finetune", "lora_finetune")
    assert pair["ratio"] == {"trainable_params": 100.0, "peak_mb": 2.0, "seconds_per_task": 1.5}
    new, warm = pair["tests"]["new_item"], pair["tests"]["warm"]
    assert new["seeds"] == [0, 1] and new["diff"] == pytest.approx(0.1)
    assert new["low"] > 0 and new["p"] < 0.01
    assert warm["diff"] == 0 and warm["p"] == 1
    table = (tmp_path / "text_encoders.md").read_text()
    assert "| full_finetune | lora_finetune | +0.000 (p 1.000)" in table
    assert "| 100.00 | 2.00 | 1.50 |" in table and "| full_global | lora_global" not in table
