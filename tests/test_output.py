"""What a person sees: the results table at 80 columns and in logs, progress lines in logs,
a quiet library, a fast `metarec --help`, and `metarec data verify`'s file statuses."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console

import metarec
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data.scenarios import ALL_SCENARIOS
from metarec.progress import ProgressLines, progress_lines
from metarec.report import print_table

from .conftest import SMALL

TINY = [*SMALL, "trainer.max_epochs=2", "trainer.limit_train_batches=0.25"]


# A run scores at most six scenarios: the published warm-up (warm_up) comes with a split file.
SIX = tuple(scenario for scenario in ALL_SCENARIOS if scenario != "warm_up")


def _metrics(scenarios=SIX) -> dict:
    names = ("mae", "mae_round", "rmse", "ndcg@1", "ndcg@3", "auc", "precision", "recall", "f1")
    return {scenario: {**{name: 0.1 * index + 0.012345 * (rank + 1)
                          for rank, name in enumerate(names)}, "n_tasks": 1234}
            for index, scenario in enumerate(scenarios)}  # fmt: skip


@pytest.mark.parametrize("overrides", [["data.name=melu-ml1m"], ["task.target=like"], []])
def test_the_terminal_table_fits_80_columns_uncut(overrides):
    cfg = load_config(None, [*overrides, "learner.name=metasgd"])
    metrics = _metrics()
    buffer = io.StringIO()
    print_table(cfg, metrics, _metrics(), console=Console(file=buffer, width=80))
    text = buffer.getvalue()
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    if cfg.task.target == "rating":
        assert all(f"{values['mae']:.4f}" in text for values in metrics.values())
    if overrides == ["data.name=melu-ml1m"]:
        assert "Wide&Deep (paper)" in text and "0.7567" in text  # MeLU-5's warm MAE


def test_the_table_to_a_file_is_markdown(capsys):
    cfg = load_config(None, [])
    print_table(cfg, _metrics(["warm", "new_user"]), None)
    out = capsys.readouterr().out
    assert "| maml | new_user | 0.1123 |" in out and "…" not in out


def test_metarec_train_in_a_log_prints_markdown_and_progress_lines(tmp_path, capsys):
    """Output captured (not a terminal): every scenario's MAE, no cut cell, progress lines."""
    args = ["train", "experiments/synthetic/maml.yaml", *TINY, "trainer.log_lines_every=2"]
    assert main([*args, f"output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "…" not in out
    for scenario, values in metrics.items():
        assert f"| maml | {scenario} | {values['mae']:.4f} |" in out
    assert re.search(r"^epoch 1/2 step 2: train/loss \d+\.\d{4} \(\d+ s\)$", out, re.M)
    assert re.search(r"^epoch 2/2: val/mae \d\.\d{4} \(best \d\.\d{4}\) \(\d+ s\)$", out, re.M)
    assert out.index("epoch 2/2: val/mae") < out.index("| method | scenario |")


def test_progress_lines_are_for_logs_or_when_the_bar_is_off(monkeypatch):
    def chosen(tty: bool, *overrides: str) -> bool:
        monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
        return bool(progress_lines(load_config(None, list(overrides))))

    assert not chosen(True)  # a terminal with its progress bar
    assert chosen(False) and chosen(True, "trainer.progress_bar=false")
    assert not chosen(False, "trainer.log_lines_every=0")


def test_progress_line_every_n_steps_and_at_validation(capsys):
    lines = ProgressLines(every=3)
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=1, max_epochs=4, global_step=2,
                              sanity_checking=False,
                              callback_metrics={"train/loss": torch.tensor(0.61234)})  # fmt: skip
    lines.on_train_batch_end(trainer, None)
    trainer.global_step = 3
    lines.on_train_batch_end(trainer, None)
    lines.on_train_batch_end(trainer, None)  # the same step again (no new optimiser step)
    trainer.callback_metrics["val/mae"] = torch.tensor(0.8)
    lines.on_validation_end(trainer, None)
    trainer.is_global_zero = False  # other ranks print nothing
    trainer.global_step = 6
    lines.on_train_batch_end(trainer, None)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert re.fullmatch(r"epoch 2/4 step 3: train/loss 0\.6123 \(\d+ s\)", out[0])
    assert re.fullmatch(r"epoch 2/4: val/mae 0\.8000 \(best 0\.8000\) \(\d+ s\)", out[1])


def test_training_from_python_is_quiet_and_leaves_logging_as_it_was(tmp_path, capfd):
    pytorch_logger = logging.getLogger("lightning.pytorch")
    fabric_logger = logging.getLogger("lightning.fabric")
    levels = pytorch_logger.level, fabric_logger.level
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    pytorch_logger.addHandler(handler)
    pytorch_logger.setLevel(logging.INFO)  # Lightning's own level (the test fixture raised it)
    fabric_logger.setLevel(logging.ERROR)  # a level a user chose
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            metarec.train("experiments/synthetic/maml.yaml", TINY, output_dir=str(tmp_path))
        assert (pytorch_logger.level, fabric_logger.level) == (logging.INFO, logging.ERROR)
    finally:
        pytorch_logger.removeHandler(handler)
        pytorch_logger.setLevel(levels[0])
        fabric_logger.setLevel(levels[1])
    captured = capfd.readouterr()
    said = captured.out + captured.err + "".join(r.getMessage() for r in records)
    said += "".join(str(warning.message) for warning in caught)
    for noise in ("GPU available", "TPU available", "litlogger", "LeafSpec"):
        assert noise not in said


def test_help_imports_no_torch():
    """What the `metarec` script runs, with `-X importtime` (timing it would be flaky)."""
    script = "import sys; from metarec.cli import main; sys.exit(main(['--help']))"
    command = [sys.executable, "-X", "importtime", "-c", script]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "train" in done.stdout and "predict" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "metarec.cli" in imported
    assert not {"torch", "lightning"} & set(imported)


def test_data_verify_says_missing_or_mismatch_and_what_to_do(tmp_path, capsys):
    (tmp_path / "users.dat").write_text("not the real file\n")
    assert main(["data", "verify", "melu-ml1m", "--root", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    users = next(line for line in lines if line.startswith("users.dat"))
    assert re.fullmatch(r"users\.dat +checksum mismatch", users)
    assert re.fullmatch(r"warm_state\.json +missing", lines[0])
    assert "9 missing, 1 checksum mismatch" in lines[-1]
    assert f"metarec data download melu-ml1m --root {tmp_path}" in lines[-1]
