"""W&B tracking: offline without a key (said once), the offline run folder holds the config."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import pytest

from metarec import tracking
from metarec.config.load import load_config
from metarec.tracking import has_credentials, make_wandb_logger, resolve_mode

from .conftest import SMALL

TINY = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


pytestmark = pytest.mark.usefixtures("wandb_offline")


def read_wandb_records(path: Path) -> list:
    """The protobuf records of a ``.wandb`` file (W&B's header, then LevelDB's log format:
    32 KiB blocks of records with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", f"{path} is not a W&B data file"
    records, chunk, pos = [], b"", 7
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        chunk, pos = chunk + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_offline_run_folder_holds_the_config_and_metrics(tmp_path):
    pytest.importorskip("wandb")
    from metarec.pipeline import train

    overrides = [*TINY, f"output_dir={tmp_path / 'runs'}", "learner.inner_lr=0.07",
                 "tracking.wandb=true", "tracking.group=g1", "tracking.tags=[a,b]"]  # fmt: skip
    cfg = load_config("experiments/synthetic/maml.yaml", overrides)
    result = train(cfg)

    (offline,) = (result.run_dir / "wandb").glob("offline-run-*")
    saved = load_config(offline / "files" / tracking.CONFIG_FILE)
    assert saved == cfg
    (data_file,) = offline.glob("run-*.wandb")
    records = read_wandb_records(data_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "metarec" and run.run_group == "g1" and list(run.tags) == ["a", "b"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["learner"]["inner_lr"] == 0.07 and config["data"]["synthetic"]["n_users"] == 300
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update({u.key: json.loads(u.value_json) for u in record.summary.update})
    own = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["val/mae"] == pytest.approx(own["val/mae"])
    assert summary["test/new_user/mae"] == pytest.approx(own["test/new_user/mae"])
    # metarec's own readable files are written beside W&B's binary one
    assert (result.run_dir / "logs" / "metrics.csv").is_file()
    assert own["val/mae"] == pytest.approx(result.val_mae)


def test_summary_val_metrics_are_the_kept_epoch(tmp_path):
    """summary.json's val/* come from the epoch whose weights were kept (lowest val/mae)."""
    import csv

    from metarec.pipeline import train

    overrides = [*SMALL, "trainer.max_epochs=3", "trainer.limit_train_batches=2",
                 f"output_dir={tmp_path}"]  # fmt: skip
    result = train(load_config("experiments/synthetic/maml.yaml", overrides))
    with open(result.run_dir / "logs" / "metrics.csv") as rows:
        epochs = [row for row in csv.DictReader(rows) if row["val/mae"]]
    best = min(epochs, key=lambda row: float(row["val/mae"]))
    assert len(epochs) == 3
    assert result.summary["val/mae"] == pytest.approx(float(best["val/mae"]))
    assert result.summary["val/rmse"] == pytest.approx(float(best["val/rmse"]))
    assert not (result.run_dir / "wandb").exists()  # tracking is off by default


def test_online_without_a_key_runs_offline_and_says_so_once(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with caplog.at_level(logging.WARNING, logger="metarec.tracking"):
        assert resolve_mode("online") == "offline"
        assert resolve_mode("online") == "offline"
    notices = [r for r in caplog.records if "offline" in r.getMessage()]
    assert len(notices) == 1 and "wandb sync" in notices[0].getMessage()


def test_a_key_and_a_network_keep_the_run_online(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert has_credentials()
    monkeypatch.setattr(tracking, "reachable", lambda: True)  # no network call in tests
    assert resolve_mode("online") == "online"
    monkeypatch.setattr(tracking, "reachable", lambda: False)
    assert resolve_mode("online") == "offline"
    assert resolve_mode("disabled") == "disabled"


def test_disabled_or_off_makes_no_logger(tmp_path):
    cfg = load_config(None, ["tracking.wandb=true", "tracking.mode=disabled"])
    assert make_wandb_logger(cfg, tmp_path) is None
    assert make_wandb_logger(load_config(None, []), tmp_path) is None
    assert not any(tmp_path.iterdir())
