"""TALLRec's few-shot MovieLens-100K protocol (metarec/datasets/tallrec_ml100k.py) and the
pooled AUC (metarec/metrics/pooled.py), on small generated u.data / u.item / u.user files."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import metarec.catalog  # noqa: F401  (registers the learners)
from metarec.catalog import load_dataset
from metarec.config.load import load_config
from metarec.data import ml100k as ml100k_files
from metarec.data.scenarios import ColdStartTasks
from metarec.datasets import tallrec_ml100k as tallrec
from metarec.errors import ConfigError, DataError
from metarec.metrics.pooled import paired_auc_test, pooled_auc, pooled_auc_estimate

N_USERS, N_ITEMS, N_LAST = 30, 40, 100


def write_ml100k(root: Path, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """GroupLens-format files (u.data gzipped, the others plain) and the ratings written, in
    file order. Timestamps repeat (ties) and differ in digit count."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for item in range(1, N_ITEMS + 1):
        flags = ["1" if flag else "0" for flag in rng.random(19) < 0.2]
        items.append(f"{item}|Movie {item} (199{item % 10})|01-Jan-199{item % 10}||http://x|"
                     + "|".join(flags))  # fmt: skip
    (root / "u.item").write_bytes("\n".join(items).encode("latin-1") + b"\n")
    users = [f"{u}|{rng.integers(10, 70)}|{'MF'[u % 2]}|job{u % 4}|{u:05d}"
             for u in range(1, N_USERS + 1)]  # fmt: skip
    (root / "u.user").write_text("\n".join(users) + "\n")
    ratings = []
    for user in range(1, N_USERS + 1):
        count = int(rng.integers(12, 30))
        chosen = rng.choice(np.arange(1, N_ITEMS + 1), size=count, replace=False)
        times = rng.integers(9_990, 10_020, size=count)  # many ties, 4 and 5 digits
        for item, when in zip(chosen, times, strict=True):
            ratings.append((str(user), str(item), int(rng.integers(1, 6)), int(when)))
    order = rng.permutation(len(ratings))  # interleave users, as u.data does
    ratings = [ratings[i] for i in order]
    body = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings)
    (root / "u.data.gz").write_bytes(gzip.compress(body.encode()))
    return ratings


def brute_force(ratings, history: int = 10) -> list[tuple]:
    """TALLRec's preprocess_movie.py loop, written out: users in order of first line, each
    user's ratings sorted by time (stable), a sample per rating after the first ``history``."""
    per_user: dict[str, list] = {}
    for user, item, rating, when in ratings:
        per_user.setdefault(user, []).append((item, int(rating > 3), when))
    samples = []
    for user, rows in per_user.items():
        rows = sorted(rows, key=lambda row: row[2])
        for i in range(history, len(rows)):
            samples.append((user, tuple(r[0] for r in rows[i - history : i]),
                            tuple(r[1] for r in rows[i - history : i]), rows[i][0], rows[i][1],
                            rows[i][2]))  # fmt: skip
    return samples


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    root = tmp_path_factory.mktemp("ml-100k")
    return root, write_ml100k(root)


def config(root: Path, *overrides: str):
    return load_config(None, [
        "data.name=tallrec-ml100k", f"data.root={root}", f"data.tallrec.n_last={N_LAST}",
        "task.target=like", "trainer.progress_bar=false", *overrides,
    ])  # fmt: skip


def tasks_of(root: Path, *overrides: str) -> ColdStartTasks:
    cfg = config(root, *overrides)
    return ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)


def as_samples(task_set, dataset) -> list[tuple]:
    """(user, history items, history labels, target, label) of every task."""
    items, users = dataset.items.ids, dataset.users.ids
    return [
        (users[int(user)], tuple(items[i] for i in support.tolist()),
         tuple(int(r) for r in support_rating.tolist()), items[int(query[0])], int(label[0]))
        for user, support, support_rating, query, label in zip(
            task_set.user, task_set.support_item, task_set.support_rating,
            task_set.query_item, task_set.query_rating, strict=True)
    ]  # fmt: skip


def test_samples_match_a_brute_force_construction(ml100k):
    root, ratings = ml100k
    dataset = load_dataset(config(root).data)
    built = tallrec.make_samples(dataset.states["warm_state"], dataset.meta["times"], 10)
    expected = brute_force(ratings)
    assert (
        len(built)
        == len(expected)
        == sum(max(0, sum(r[0] == u for r in ratings) - 10) for u in {r[0] for r in ratings})
    )
    stars = {(u, i): r for u, i, r, _ in ratings}
    for row, (user, history, _, target, _, when) in enumerate(expected):
        assert built.user[row] == user
        assert tuple(built.items[row]) == (*history, target)
        assert built.time[row] == when
        assert built.ratings[row].tolist() == [stars[user, i] for i in (*history, target)]


def test_a_like_is_a_rating_above_3(ml100k):
    root, ratings = ml100k
    tasks = tasks_of(root, "data.tallrec.train_samples=null", "data.tallrec.extra=true")
    assert tasks.dataset.binary
    stars = {(u, i): r for u, i, r, _ in ratings}
    expected = {(s[0], s[3]): s for s in brute_force(ratings)}
    seen, threes = 0, 0
    for task_set in (tasks.train, tasks.val, tasks.test["warm"]):
        for user, history, labels, target, label in as_samples(task_set, tasks.dataset):
            assert labels == tuple(int(stars[user, item] > 3) for item in history)
            assert label == int(stars[user, target] > 3)
            assert (history, labels, label) == tuple(expected[user, target][i] for i in (1, 2, 4))
            threes += stars[user, target] == 3
            seen += 1
    assert seen == len(expected)  # extra + every training sample + val + test: all of them
    assert threes > 0  # and each of those was a dislike


def test_the_last_n_samples_are_cut_8_1_1_in_list_order(ml100k):
    root, ratings = ml100k
    expected = brute_force(ratings)
    tasks = tasks_of(root, "data.tallrec.train_samples=null")
    keys = [(s[0], s[3]) for s in expected]
    last = keys[-N_LAST:]
    test = [(s[0], s[3]) for s in as_samples(tasks.test["warm"], tasks.dataset)]
    val = [(s[0], s[3]) for s in as_samples(tasks.val, tasks.dataset)]
    train = [(s[0], s[3]) for s in as_samples(tasks.train, tasks.dataset)]
    assert test == last[int(0.9 * N_LAST) :] and val == last[int(0.8 * N_LAST) : int(0.9 * N_LAST)]
    assert sorted(train) == sorted(last[: int(0.8 * N_LAST)])
    assert tasks.test["warm"].user_ids == [f"{u}:{i}" for u, i in test]


def test_order_time_sorts_samples_by_the_target_timestamp(ml100k):
    root, ratings = ml100k
    expected = brute_force(ratings)
    by_time = sorted(range(len(expected)), key=lambda i: expected[i][5])  # stable
    last = [(expected[i][0], expected[i][3]) for i in by_time][-N_LAST:]
    tasks = tasks_of(root, "data.tallrec.order=time")
    test = [(s[0], s[3]) for s in as_samples(tasks.test["warm"], tasks.dataset)]
    assert test == last[int(0.9 * N_LAST) :]
    stamps = {(u, i): t for u, i, _, t in ratings}
    earliest_test = min(stamps[key] for key in test)
    train = tasks_of(root, "data.tallrec.order=time", "data.tallrec.extra=true").train
    assert max(stamps[s[0], s[3]] for s in as_samples(train, tasks.dataset)) <= earliest_test


def test_few_shot_sets_are_seeded_nested_and_tallrecs_shuffle(ml100k):
    root, ratings = ml100k
    sets = {k: tasks_of(root, f"data.tallrec.train_samples={k}").train.user_ids
            for k in (4, 8, 16)}  # fmt: skip
    assert len(sets[4]) == 4 and sets[8][:4] == sets[4] and sets[16][:8] == sets[8]
    assert tasks_of(root, "data.tallrec.train_samples=8").train.user_ids == sets[8]
    assert tasks_of(root, "data.tallrec.train_samples=8", "data.seed=1").train.user_ids != sets[8]
    # TALLRec: train.shuffle(seed=seed).select(range(k)); Hugging Face datasets' shuffle is
    # np.random.default_rng(seed).permutation over the training part in list order.
    part = [f"{s[0]}:{s[3]}" for s in brute_force(ratings)[-N_LAST:][: int(0.8 * N_LAST)]]
    for seed in (0, 3):
        order = np.random.default_rng(seed).permutation(len(part))
        drawn = tasks_of(root, "data.tallrec.train_samples=16", f"data.seed={seed}")
        assert drawn.train.user_ids == [part[i] for i in order[:16]]


def test_no_test_target_is_seen_in_training(ml100k):
    root, _ = ml100k
    for order in ("user", "time"):
        tasks = tasks_of(root, "data.tallrec.train_samples=null", "data.tallrec.extra=true",
                         f"data.tallrec.order={order}")  # fmt: skip
        test = {(s[0], s[3]) for s in as_samples(tasks.test["warm"], tasks.dataset)}
        val = {(s[0], s[3]) for s in as_samples(tasks.val, tasks.dataset)}
        seen = set()
        for user, history, _, target, _ in as_samples(tasks.train, tasks.dataset):
            seen |= {(user, item) for item in (*history, target)}
        assert not test & seen and not val & seen and not test & val


def test_loader_rejects_bad_files(tmp_path):
    root = tmp_path / "ml"
    write_ml100k(root)
    body = gzip.decompress((root / "u.data.gz").read_bytes()).decode()
    (root / "u.data.gz").unlink()
    (root / "u.data").write_text(body + "1\t999\t4\t10000\n")
    with pytest.raises(DataError, match=r"u.data line \d+: unknown item 999"):
        load_dataset(config(root).data)
    (root / "u.data").write_text(body + "1\t1\t6\t10000\n")
    with pytest.raises(DataError, match=r"u.data line \d+: (rating 6|user 1 rates item 1)"):
        load_dataset(config(root).data)
    (root / "u.user").unlink()
    with pytest.raises(DataError, match="u.user"):
        load_dataset(config(root).data)


def test_bad_settings_name_their_key(ml100k):
    root, _ = ml100k
    with pytest.raises(DataError, match="n_last"):
        tasks_of(root, "data.tallrec.n_last=100000")
    with pytest.raises(ConfigError, match="train_samples"):
        tasks_of(root, "data.tallrec.train_samples=81")
    with pytest.raises(ConfigError, match="task.unit"):
        tasks_of(root, "task.unit=item")


def test_download_checks_the_published_sha1_and_unpacks_where_the_loader_looks(
    monkeypatch, tmp_path, capsys
):
    import zipfile

    import pooch

    source = tmp_path / "source"
    write_ml100k(source)
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ml-100k/u.data", gzip.decompress((source / "u.data.gz").read_bytes()))
        for name in ("u.item", "u.user", "README"):
            zipped.writestr(f"ml-100k/{name}", (source / name).read_bytes() if name != "README"
                            else b"readme")  # fmt: skip
    hashes = []

    def retrieve(url, known_hash, fname, path, processor):  # pooch's, offline
        hashes.append((url, known_hash))
        (Path(path) / fname).write_bytes(archive.read_bytes())
        return processor(str(Path(path) / fname), "download", None)

    monkeypatch.setattr(pooch, "retrieve", retrieve)
    root = tmp_path / "data"
    root.mkdir()
    assert tallrec.TallrecML100K.download(root) == root / "ml-100k"
    assert hashes == [(ml100k_files.ML100K_URL, f"sha1:{ml100k_files.ML100K_SHA1}")]
    assert not (root / "ml-100k" / "README").exists()  # only the three files
    assert len(load_dataset(config(root).data).states["warm_state"]) == N_USERS
    # `metarec data verify` finds them where the zip put them; these are not GroupLens' bytes
    from metarec.cli import main

    assert main(["data", "verify", "tallrec-ml100k", "--root", str(root)]) == 1
    assert "3 checksum mismatch" in capsys.readouterr().out
    digests = {name: hashlib.md5(gzip.decompress((source / "u.data.gz").read_bytes())
                                 if name == "u.data" else (source / name).read_bytes()).hexdigest()
               for name in ml100k_files.FILES}  # fmt: skip
    monkeypatch.setattr(ml100k_files, "ML100K_MD5", digests)
    assert main(["data", "verify", "tallrec-ml100k", "--root", str(root)]) == 0
    assert tallrec.TallrecML100K.verify(root / "ml-100k") == dict.fromkeys(ml100k_files.FILES, "ok")


def brute_auc(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_pooled_auc_equals_pair_counting():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        scores = rng.integers(0, 5, size=n).astype(float) * 7.5 - 10  # ties, outside [0, 1]
        labels = rng.integers(0, 2, size=n)
        if labels.min() == labels.max():
            assert math.isnan(pooled_auc(scores, labels))
            continue
        assert pooled_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))
    # Large logits must not tie through a sigmoid.
    assert pooled_auc([40.0, 41.0], [0, 1]) == 1.0
    scores, labels = torch.tensor([[0.9, 0.0], [0.2, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[True, False], [True, False]])
    assert pooled_auc(scores, labels, mask) == 1.0


def test_pooled_bootstrap_intervals():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=200)
    scores = labels + rng.normal(size=200)
    users = np.repeat(np.arange(20), 10)
    one = pooled_auc_estimate([scores], [labels], n_boot=500)
    assert one.mean == pytest.approx(pooled_auc(scores, labels)) and one.low < one.mean < one.high
    by_user = pooled_auc_estimate([scores], [labels], groups=[users], n_boot=500)
    assert by_user.mean == one.mean
    # A fixed test set scored alike under 5 seeds is no more certain than under one.
    same = pooled_auc_estimate([scores] * 5, [labels] * 5, shared=True, n_boot=500)
    assert (same.low, same.high) == pytest.approx((one.low, one.high), abs=0.02)
    with pytest.raises(ValueError, match="shared"):
        pooled_auc_estimate([scores, scores], [labels, 1 - labels], shared=True, n_boot=10)
    test = paired_auc_test([scores], [rng.normal(size=200)], [labels], n_boot=500)
    assert test.diff > 0 and test.low > 0 and test.p < 0.01
    assert paired_auc_test([scores], [scores], [labels], n_boot=100).p == 1.0


def run_predictions(root: Path, *overrides: str) -> tuple[float, np.ndarray]:
    from metarec.build import build_learner

    cfg = config(root, "data.tallrec.train_samples=16", *overrides)
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    learner = build_learner(cfg, tasks)
    test = tasks.test["warm"]
    batch = test[torch.arange(len(test))]
    with torch.enable_grad():
        pred = learner(batch).detach()
    return pooled_auc(pred, batch["query_rating"], batch["query_mask"]), pred.numpy()


def test_one_epoch_runs_give_a_finite_pooled_auc(ml100k, tmp_path):
    from metarec.pipeline import train

    root, _ = ml100k
    result = train(config(root, "learner.name=mean", "learner.kind=global",
                          "trainer.max_epochs=1", f"output_dir={tmp_path}"))  # fmt: skip
    assert (result.run_dir / "metrics.json").is_file()
    trained = train(config(root, "learner.name=protonet", "trainer.max_epochs=1",
                           f"output_dir={tmp_path}"))  # fmt: skip
    assert trained.metrics["warm"]["n_tasks"] == int(0.1 * N_LAST)  # one task per sample
    auc, pred = run_predictions(root, "learner.name=mean", "learner.kind=global")
    assert auc == 0.5 and len(np.unique(pred)) == 1  # a constant ranks nothing
    auc, _ = run_predictions(root, "learner.name=mean", "learner.kind=user")
    assert math.isfinite(auc)
