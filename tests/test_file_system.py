"""File-system failures end in one line naming the path; checkpoints are written atomically in
their own folder whatever ``$TMPDIR`` is; a run that fails says so in its folder. As root,
permission bits are ignored: refusals are simulated (and real tmpfs mounts, where allowed)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io import torch_io

import metarec.pipeline
from metarec import reproduce as rep
from metarec.checkpoint_io import AtomicCheckpointIO
from metarec.cli import main
from metarec.errors import OutputError, TrainingDiverged
from metarec.io import atomic_write_bytes
from metarec.resume import FAILED, LAST, mark_failed
from tests.conftest import SMALL

FAST = [*SMALL, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
MAML = ["train", "experiments/synthetic/maml.yaml", *FAST]


def _error_line(capsys) -> str:
    """The failed command's one stderr line (nothing else there) after ``metarec: error: ``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("metarec: error: ")
    return line.removeprefix("metarec: error: ")


def _refuse_writes(monkeypatch, root: Path, code: int) -> None:
    """Folders and files created under ``root`` fail with ``code`` (EROFS, EACCES, ...)."""
    real_mkdir, real_open = os.mkdir, os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def refuse(path) -> None:
        if Path(os.fsdecode(path)).is_relative_to(root):
            raise OSError(code, os.strerror(code), os.fsdecode(path))

    def mkdir(path, *args, **kwargs):
        refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & writing:
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def _never(what: str):
    """A stand-in that fails the test with ``what`` if it is called."""

    def called(*args, **kwargs):
        raise AssertionError(what)

    return called


@pytest.fixture
def no_data(monkeypatch):
    """Reading the data fails the test: every check here comes before it."""
    monkeypatch.setattr(metarec.pipeline, "prepare_tasks", _never("the data was read"))


def test_output_dir_under_a_regular_file(tmp_path, capsys, no_data):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "runs"
    assert main([*MAML, f"output_dir={out}"]) == 2
    assert _error_line(capsys) == f"output_dir {out}: cannot write (Not a directory)"
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
@pytest.mark.parametrize("exists", [True, False])
def test_output_dir_that_refuses_writes(tmp_path, capsys, monkeypatch, no_data, code, exists):
    out = tmp_path / "runs"
    if exists:
        out.mkdir()
    _refuse_writes(monkeypatch, out if exists else tmp_path, code)
    assert main([*MAML, f"output_dir={out}"]) == 2
    reason = os.strerror(code)
    assert _error_line(capsys) == f"output_dir {out}: cannot write ({reason})"
    assert list(tmp_path.rglob("*")) == ([out] if exists else [])


@contextlib.contextmanager
def _tmpfs(folder: Path, options: str):
    """A tmpfs mounted at ``folder`` (skips the test where mounting is not allowed)."""
    folder.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]
    if not shutil.which("mount") or subprocess.run(command, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not allowed here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_real_read_only_mount(tmp_path, capsys, no_data):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as folder:
        out = folder / "runs"
        assert main([*MAML, f"output_dir={out}"]) == 2
        assert _error_line(capsys) == f"output_dir {out}: cannot write (Read-only file system)"
        assert not any(folder.iterdir())


def test_a_real_full_disk_leaves_the_old_file(tmp_path):
    with _tmpfs(tmp_path / "small", "size=64k") as folder:
        path = atomic_write_bytes(folder / "metrics.json", b"{}")
        with pytest.raises(OutputError) as raised:
            atomic_write_bytes(path, bytes(1 << 20))
        assert str(raised.value) == f"{path}: cannot write (No space left on device)"
        assert [p.name for p in folder.iterdir()] == ["metrics.json"]
        assert path.read_bytes() == b"{}"


def test_predict_reproduce_and_sweep_out_under_a_regular_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "out"
    message = f"{out}: cannot write (Not a directory)"
    monkeypatch.setattr(metarec.pipeline, "train", _never("a run started"))
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("item,rating\n1,5\n")
    predict = ["predict", str(tmp_path / "no-run"), "--ratings", str(ratings)]
    assert main([*predict, "--out", str(out / "scores.csv")]) == 2
    assert _error_line(capsys) == f"--out folder {message}"
    assert main(["reproduce", "synthetic", "--methods", "mean", "--out", str(out)]) == 2
    assert _error_line(capsys) == f"output folder {message}"
    pytest.importorskip("sweeps")
    sweep = "experiments/sweeps/maml_inner_synthetic.yaml"
    assert main(["sweep", sweep, "--local", "--out", str(out)]) == 2
    assert _error_line(capsys) == f"output folder {message}"
    assert [path.name for path in tmp_path.iterdir()] == ["file", "ratings.csv"]


def test_a_full_disk_at_the_first_checkpoint_marks_the_run_failed(tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up when the first checkpoint is written
        if "/checkpoints/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main([*MAML, f"output_dir={tmp_path}"]) == 2
    (run_dir,) = tmp_path.iterdir()
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    message = f"{checkpoint}: cannot write (No space left on device)"
    assert _error_line(capsys) == message
    assert (run_dir / FAILED).read_text() == f"OutputError: {message}\n"
    assert not (run_dir / "metrics.json").exists()
    assert not [path for path in run_dir.rglob("*") if path.name.endswith(".tmp")]


def test_a_full_disk_that_takes_no_reason_still_takes_the_mark(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    mark_failed(tmp_path, RuntimeError("boom"))
    assert [path.name for path in tmp_path.iterdir()] == [FAILED]
    assert (tmp_path / FAILED).read_text() == ""


def test_a_failed_run_is_marked_and_resuming_it_clears_the_mark(tmp_path, capsys, monkeypatch):
    def evaluate(*args, **kwargs):  # training finished, then the run was interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(metarec.pipeline, "evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        main([*MAML, f"output_dir={tmp_path}"])
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / FAILED).read_text() == "KeyboardInterrupt\n"
    assert (run_dir / "checkpoints" / LAST).is_file() and not (run_dir / "metrics.json").exists()
    monkeypatch.undo()  # evaluation works again
    assert main([*MAML, f"output_dir={tmp_path}", "resume=true", "trainer.max_epochs=2"]) == 0
    assert list(tmp_path.iterdir()) == [run_dir]
    assert (run_dir / "metrics.json").is_file() and not (run_dir / FAILED).exists()


@pytest.mark.parametrize("kind", ["diverged", "log write"])
def test_a_failed_fit_is_one_line_and_marks_the_folder(tmp_path, capsys, monkeypatch, kind):
    def fit(cfg, tasks, learner, run_dir, *args, **kwargs):
        if kind == "diverged":
            raise TrainingDiverged("meta-training loss is nan at step 3")
        log = run_dir / "logs" / "metrics.csv"  # written by Lightning, not metarec.io
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(log))

    monkeypatch.setattr(metarec.pipeline, "_fit_and_evaluate", fit)
    assert main([*MAML, f"output_dir={tmp_path}"]) == 2
    (run_dir,) = tmp_path.iterdir()
    line = {
        "diverged": "meta-training loss is nan at step 3",
        "log write": f"{run_dir / 'logs' / 'metrics.csv'}: cannot write (No space left on device)",
    }[kind]
    assert _error_line(capsys) == line
    error = "TrainingDiverged" if kind == "diverged" else "OutputError"
    assert (run_dir / FAILED).read_text() == f"{error}: {line}\n"


def test_reproduce_shows_a_run_marked_failed_and_runs_it_again(tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    real_train = metarec.pipeline.train

    def train(cfg, task_cache=None):
        calls.append(cfg.seed)
        return real_train(cfg, task_cache)

    monkeypatch.setattr(metarec.pipeline, "train", train)
    args = {"seeds": 2, "methods": ["mean"], "overrides": FAST, "out": out, "progress": False}
    first, _, _ = rep.reproduce("synthetic", **args, warms=["heldout"])
    failed_dir = Path(next(row["run_dir"] for row in first if row["seed"] == 1))
    mark_failed(failed_dir, RuntimeError("resumed, then out of memory"))
    statuses = {row["status"] for row in rep.load_rows(out) if row["seed"] == 1}
    assert statuses == {"failed: RuntimeError: resumed, then out of memory"}
    second, _, _ = rep.reproduce("synthetic", **args, warms=["heldout"])
    assert calls == [0, 1, 1]  # the marked run again, the finished one kept
    assert {row["status"] for row in second} == {"ok"}
    assert {row["run_dir"] for row in second if row["seed"] == 1} != {str(failed_dir)}


def _checkpoint(value: float) -> dict:
    return {"state_dict": {"weight": torch.full((4,), value)}, "epoch": int(value)}


@pytest.fixture
def other_tmpdir(tmp_path, monkeypatch):
    """``$TMPDIR`` set to a folder of its own (for ``tempfile`` too), which must stay empty."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert tempfile.gettempdir() == str(folder)
    yield folder
    assert not any(folder.iterdir())


@pytest.mark.parametrize("killed_in", ["torch.save", "os.replace"])
def test_a_killed_checkpoint_save_keeps_the_old_one(tmp_path, monkeypatch, other_tmpdir, killed_in):
    path = tmp_path / "checkpoints" / LAST
    AtomicCheckpointIO().save_checkpoint(_checkpoint(1.0), path)
    real_save, renamed = torch.save, []

    def half_save(obj, target, *args, **kwargs):  # killed with half the bytes serialised
        real_save(obj, target, *args, **kwargs)
        target.truncate(target.tell() // 2)
        raise KeyboardInterrupt

    def replace(source, target):  # killed with the whole new file written, before the rename
        renamed.append((Path(source).parent, Path(target), Path(source).stat().st_size))
        raise KeyboardInterrupt

    if killed_in == "torch.save":
        monkeypatch.setattr(torch, "save", half_save)
    else:
        monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint(_checkpoint(2.0), path)
    if killed_in == "os.replace":  # the temporary file was in the checkpoint's own folder
        ((folder, target, size),) = renamed
        assert folder == path.parent and target == path and size > 0
    assert list(path.parent.iterdir()) == [path]
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_training_checkpoints_never_go_through_tmpdir(tmp_path, monkeypatch, other_tmpdir):
    monkeypatch.setattr(torch_io, "_atomic_save", _never("Lightning's save (fsspec, $TMPDIR)"))
    real_replace, renamed = os.replace, []

    def replace(source, target):
        renamed.append((Path(source).parent, Path(target)))
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "runs"
    assert main([*MAML, "trainer.max_epochs=2", f"output_dir={out}"]) == 0
    (run_dir,) = out.iterdir()
    saved = [(folder, target) for folder, target in renamed if target.suffix == ".ckpt"]
    folder = run_dir / "checkpoints"
    assert {target.name for _, target in saved} == {"best.ckpt", LAST}
    assert len(saved) >= 3 and all(parent == folder for parent, _ in saved)
    assert torch.load(folder / LAST, weights_only=True)["epoch"] == 1
