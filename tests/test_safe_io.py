"""Nothing half-written, nothing unpickled: atomic writes and safe loading across metarec."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from metarec import io

PACKAGE = Path(__file__).parent.parent / "metarec"
SOURCES = sorted([*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "benchmarks").glob("*.py")])


def test_a_crash_during_a_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = io.atomic_write_json(tmp_path / "metrics.json", {"mae": 0.5})
    old = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")  # after the data went to the temporary file

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_json(path, {"mae": 0.9})
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left


def test_a_crash_midway_through_a_first_write_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_text(tmp_path / "table.md", "| a |")
    assert list(tmp_path.iterdir()) == []


def _calls(name: str):
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            called = ast.unparse(node).split("(")[0] if isinstance(node, ast.Call) else ""
            if called == name or called.endswith(f".{name}"):
                yield path, node


def test_every_torch_load_is_weights_only():
    calls = list(_calls("torch.load"))
    for path, node in calls:
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get("weights_only") == "True", f"{path}:{node.lineno}"
    assert calls  # the scan sees the loaders in metarec/resume.py, pipeline.py, checkpoint.py


# The one module that reads pickles (TaNP's published split is pickled): only through an
# unpickler that refuses every global (tests/test_tanp_lastfm.py feeds it a malicious file).
PICKLE_READER = "metarec/data/lastfm.py"


def test_no_pickle_and_no_pickled_numpy():
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        reader = path.as_posix().endswith(PICKLE_READER)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "")]
                banned = {"dill"} | (set() if reader else {"pickle"})
                assert not any(n and n.split(".")[0] in banned for n in names), path
    for name in ("pickle.load", "pickle.loads", "torch.load"):
        assert not [node for path, node in _calls(name) if path.as_posix().endswith(PICKLE_READER)]
    for path, node in _calls("np.load"):
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get("allow_pickle", "False") == "False", f"{path}:{node.lineno}"


def test_results_are_not_written_with_plain_writes():
    """Result files go through metarec.io; plain writes are for logs and scratch only."""
    offenders = []
    for name in ("write_text", "write_bytes", "torch.save", "savefig", "json.dump"):
        for path, node in _calls(name):
            at = 1 if name == "torch.save" else 0  # torch.save(obj, target)
            target = ast.unparse(node.args[at]) if len(node.args) > at else ""
            if name in ("savefig", "torch.save") and target == "buffer":
                continue  # into memory, then atomic_write_bytes
            offenders.append(f"{path.name}:{node.lineno} {name}")
    assert not offenders
