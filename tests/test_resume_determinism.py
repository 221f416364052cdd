"""Interrupted runs resume to the same result; the same config twice gives the same bytes.

Both compare ``metrics.json`` byte for byte (exact, not to a tolerance): on the CPU with one
thread the computation is a fixed sequence of float operations, and a resumed run restores
the weights, the optimiser, the loops and every random generator, so nothing may differ.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TINY = {
    "name": "tiny",
    "data": {"synthetic": {"n_users": 160, "n_items": 100}},
    "learner": {"name": "maml", "meta_batch_size": 8, "eval_batch_size": 64},
    "trainer": {"max_epochs": 6, "progress_bar": False},
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    return path


def _train(config: Path, out: Path, *overrides: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "metarec.cli",
        "train",
        str(config),
        f"output_dir={out}",
        *overrides,
    ]
    return subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=900)[0].decode()
    assert process.returncode == 0, output[-3000:]
    return output


def _run_dir(out: Path) -> Path:
    (folder,) = out.iterdir()
    return folder


def _epoch_of(checkpoint: Path) -> int | None:
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # not there yet
        return None


def test_killed_run_resumed_ends_with_the_uninterrupted_metrics(tmp_path):
    config = _config(tmp_path)
    interrupted = _train(config, tmp_path / "killed")
    # Once last.ckpt is replaced (the end of epoch 1: each save renames a new file in place),
    # stop the run at once, check where it is, and kill it (SIGKILL: no clean-up at all).
    first_inode, deadline = None, time.monotonic() + 900
    while time.monotonic() < deadline and interrupted.poll() is None:
        found = list((tmp_path / "killed").glob("*/checkpoints/last.ckpt"))
        stat = found[0].stat() if found else None
        inode = (stat.st_ino, stat.st_mtime_ns) if stat else None  # inode numbers are reused
        if first_inode is None:
            first_inode = inode
        elif inode is not None and inode != first_inode:
            break
        time.sleep(0.02)
    assert interrupted.poll() is None, "the run ended before it could be killed"
    interrupted.send_signal(signal.SIGSTOP)
    epoch = _epoch_of(found[0])
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert epoch is not None and 1 <= epoch < TINY["trainer"]["max_epochs"] - 1
    run_dir = _run_dir(tmp_path / "killed")
    assert not (run_dir / "metrics.json").exists()  # killed before the end
    whole = _train(config, tmp_path / "whole")
    resumed = _finish(_train(config, tmp_path / "killed", "resume=true"))
    _finish(whole)
    assert str(run_dir) in resumed  # the same folder, continued
    assert _run_dir(tmp_path / "killed") == run_dir
    expected = (_run_dir(tmp_path / "whole") / "metrics.json").read_bytes()
    assert (run_dir / "metrics.json").read_bytes() == expected
    versions = json.loads((run_dir / "versions.json").read_text())
    assert versions["resumed"][0]["checkpoint"].endswith("last.ckpt")


def test_same_config_twice_gives_identical_metrics_bytes(tmp_path):
    config = _config(tmp_path)
    runs = [_train(config, tmp_path / name, "trainer.max_epochs=2") for name in ("a", "b")]
    for run in runs:
        _finish(run)
    first, second = (_run_dir(tmp_path / name) for name in ("a", "b"))
    assert (first / "metrics.json").read_bytes() == (second / "metrics.json").read_bytes()
    versions = json.loads((first / "versions.json").read_text())
    assert versions["seed"] == 0 and versions["torch"] == torch.__version__
    assert {"python", "lightning", "numpy", "metarec"} <= set(versions)


@pytest.mark.parametrize("value", ["true", "last"])
def test_resume_without_a_checkpoint_is_a_config_error(tmp_path, value):
    from metarec.cli import main

    code = main(["train", str(_config(tmp_path)), f"output_dir={tmp_path}", f"resume={value}"])
    assert code == 2
