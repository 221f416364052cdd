"""amazon-unisrec: the UniSRec-format loader, the implicit next-item tasks and their ranking
metrics, on generated RecBole files (and, when present, a checksum check of the real copy)."""

from __future__ import annotations

import gzip
import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from metarec.build import build_learner
from metarec.catalog import load_dataset
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data.amazon import load_amazon
from metarec.data.implicit import new_item_rows
from metarec.data.scenarios import ColdStartTasks
from metarec.data.source import Files
from metarec.datasets import amazon_unisrec
from metarec.datasets.amazon_unisrec import AmazonUniSRec
from metarec.errors import ConfigError, DataError
from metarec.metrics.ranking import (
    expected_rank_metrics,
    full_ranking_metrics,
    learner_full_ranking,
    ranking_metrics,
)
from metarec.pipeline import train

from .conftest import TINY_WORDS

N_ITEMS, N_USERS, CAP = 300, 80, 10
INTER_HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"


def item_id(row: int) -> str:
    return f"B{row:06d}X"


def item_text(row: int) -> str:
    words = TINY_WORDS[16:]
    return " ".join(words[(row * 7 + j) % len(words)] for j in range(5))


def make_sequences(seed: int = 0) -> list[list[int]]:
    """Users' chronological item rows: 5..14 items (popular items likelier), one user with a
    repeated item and two longer than the history cap."""
    rng = np.random.default_rng(seed)
    popularity = rng.gamma(0.7, 1.0, N_ITEMS)
    popularity /= popularity.sum()
    lengths = rng.integers(5, 15, N_USERS)
    lengths[:2] = (3 * CAP, 2 * CAP + 3)
    sequences = [rng.choice(N_ITEMS, size=n, replace=False, p=popularity).tolist() for n in lengths]
    sequences[2].insert(3, sequences[2][0])  # bought again
    return sequences


def unisrec_files(sequences: list[list[int]], cap: int = CAP) -> dict[str, str]:
    """The six files' contents, as UniSRec writes them (train prefixes newest first)."""
    inter = {split: [INTER_HEADER] for split in ("train", "valid", "test")}
    for user, sequence in enumerate(sequences):
        ends = {"test": len(sequence) - 1, "valid": len(sequence) - 2}
        for split, t in [*ends.items(), *(("train", t) for t in range(len(sequence) - 3, 0, -1))]:
            history = " ".join(map(str, sequence[:t][-cap:]))
            inter[split].append(f"{user}\t{history}\t{sequence[t]}\n")
    return {
        "Scientific.item2index": "".join(f"{item_id(i)}\t{i}\n" for i in range(N_ITEMS)),
        "Scientific.user2index": "".join(f"U{u:04d}\t{u}\n" for u in range(N_USERS)),
        "Scientific.text": "item_id:token\ttext:token_seq\n"
        + "".join(f"{item_id(i)}\t{item_text(i)} \n" for i in range(N_ITEMS)),
        **{f"Scientific.{split}.inter": "".join(lines) for split, lines in inter.items()},
    }


def write_files(root: Path, files: dict[str, str], gz: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if gz:
            with gzip.open(root / f"{name}.gz", "wt", encoding="utf-8") as handle:
                handle.write(text)
        else:
            (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def sequences() -> list[list[int]]:
    return make_sequences()


@pytest.fixture(scope="module")
def root(tmp_path_factory, sequences) -> Path:
    return write_files(tmp_path_factory.mktemp("amazon"), unisrec_files(sequences), gz=True)


SMALL = ["data.name=amazon-unisrec", "task.target=like", "data.amazon.negatives=20",
         "data.amazon.train_negatives=3", "data.amazon.new_item_fraction=0.2",
         "data.amazon.max_history=6", "data.val_fraction=0.15", "data.test_fraction=0.15",
         "learner.meta_batch_size=16", "learner.eval_batch_size=64",
         "trainer.progress_bar=false"]  # fmt: skip


def config(root: Path, *overrides: str):
    return load_config(None, [*SMALL, f"data.root={root}", *overrides])


def build(root: Path, *overrides: str) -> ColdStartTasks:
    cfg = config(root, *overrides)
    return ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)


@pytest.fixture(scope="module")
def tasks(root) -> ColdStartTasks:
    return build(root, "task.warm=[heldout]")


# --- loader ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_loader_rebuilds_each_users_full_sequence(tmp_path, sequences, gz):
    dataset = load_amazon(write_files(tmp_path, unisrec_files(sequences), gz=gz), "amazon-unisrec")
    users = dataset.states["warm_state"]
    assert [user.user for user in users] == [f"U{u:04d}" for u in range(N_USERS)]
    # past the history cap (users 0 and 1), the earlier items come from the train prefixes
    assert [user.items for user in users] == [[item_id(i) for i in s] for s in sequences]
    assert all(user.ratings.tolist() == [1.0] * len(user.items) for user in users)
    assert dataset.items.ids == [item_id(i) for i in range(N_ITEMS)]
    assert dataset.item_text[item_id(3)] == item_text(3)
    assert dataset.binary
    assert set(dataset.items.values) == {"item_id"} and set(dataset.users.values) == {"user"}
    assert (dataset.users.values["user"] == 1).all()  # one constant feature: no user id
    assert all(not users for state, users in dataset.states.items() if state != "warm_state")


def test_plain_file_wins_over_gz(tmp_path, sequences):
    files = unisrec_files(sequences)
    write_files(tmp_path, files, gz=True)
    broken = dict(files)
    broken["Scientific.text"] = files["Scientific.text"].replace("item_id:token", "id", 1)
    write_files(tmp_path, {"Scientific.text": broken["Scientific.text"]})
    with pytest.raises(DataError, match=r"^Scientific\.text line 1: expected the header"):
        load_amazon(tmp_path, "amazon-unisrec")


def corrupt(files: dict[str, str], name: str, line: int, new: str) -> dict[str, str]:
    lines = files[name].split("\n")
    lines[line - 1] = new
    return {**files, name: "\n".join(lines)}


@pytest.mark.parametrize(
    ("name", "line", "new", "message"),
    [
        ("Scientific.test.inter", 3, "2\t1 2 3", "expected 3 tab-separated fields, found 2"),
        ("Scientific.valid.inter", 5, "4\t1 2 x\t7", "item 'x' is not an index 0..299"),
        ("Scientific.train.inter", 2, f"{N_USERS}\t1\t2", f"user '{N_USERS}' is not an index"),
        ("Scientific.test.inter", 4, "2\t1 2\t99999", "item '99999' is not an index"),
        ("Scientific.text", 6, "B999999X\tsome text", "item 'B999999X' is not in the item2index"),
        ("Scientific.text", 7, "no tab here", "expected 2 tab-separated fields, found 1"),
        ("Scientific.item2index", 9, f"{item_id(8)}\teight", "expected 'item <tab> index'"),
        ("Scientific.item2index", 10, f"{item_id(0)}\t9", "duplicate item"),
        ("Scientific.user2index", 2, "U0001\t7", "index 7 of user U0007 is on line 2 too"),
        ("Scientific.valid.inter", 1, "user\titems\titem", "expected the header"),
    ],
)
def test_a_bad_line_is_a_data_error_naming_file_and_line(
    tmp_path, sequences, name, line, new, message
):
    files = corrupt(unisrec_files(sequences), name, line, new)
    with pytest.raises(DataError) as caught:
        load_amazon(write_files(tmp_path, files, gz=True), "amazon-unisrec")
    text = str(caught.value)
    assert text.startswith(f"{name}.gz line ") and message in text, text
    if "on line 2 too" not in message:
        assert text.startswith(f"{name}.gz line {line}:"), text


def test_a_line_off_the_sequence_is_named(tmp_path, sequences):
    files = unisrec_files(sequences)
    train = files["Scientific.train.inter"].split("\n")
    user, _, target = train[1].split("\t")
    train[1] = f"{user}\t{(int(target) + 1) % N_ITEMS} {target}\t{target}"
    files["Scientific.train.inter"] = "\n".join(train)
    with pytest.raises(DataError, match=r"^Scientific\.train\.inter line 2: user U0000's history"):
        load_amazon(write_files(tmp_path, files), "amazon-unisrec")


def test_missing_files_are_listed_with_the_download_command(tmp_path, sequences):
    files = unisrec_files(sequences)
    del files["Scientific.text"], files["Scientific.valid.inter"]
    with pytest.raises(DataError) as caught:
        load_amazon(write_files(tmp_path, files), "amazon-unisrec")
    assert "Scientific.text, Scientific.valid.inter" in str(caught.value)
    assert "metarec data download amazon-unisrec" in str(caught.value)


def test_verify_and_cli_report_each_file(tmp_path, sequences, monkeypatch, capsys):
    files = unisrec_files(sequences)
    root = write_files(tmp_path, files, gz=True)
    digests = {name: hashlib.md5(text.encode()).hexdigest() for name, text in files.items()}
    monkeypatch.setattr(
        AmazonUniSRec, "files", Files(digests, "md5", amazon_unisrec.AMAZON_BASE_URL)
    )
    assert set(AmazonUniSRec.verify(root).values()) == {"ok"}
    (root / "Scientific.text.gz").unlink()
    (root / "Scientific.test.inter.gz").write_bytes(b"not gzip")
    report = AmazonUniSRec.verify(root)
    assert report["Scientific.text"] == "missing"
    assert report["Scientific.test.inter"] == "unreadable"
    assert main(["data", "verify", "amazon-unisrec", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "Scientific.text" in out and "missing" in out and "--root" in out


def test_download_fetches_only_what_is_missing_or_wrong(tmp_path, sequences, monkeypatch):
    pooch = pytest.importorskip("pooch")
    files = unisrec_files(sequences)
    digests = {name: hashlib.md5(text.encode()).hexdigest() for name, text in files.items()}
    monkeypatch.setattr(
        AmazonUniSRec, "files", Files(digests, "md5", amazon_unisrec.AMAZON_BASE_URL)
    )
    del files["Scientific.text"]
    files["Scientific.user2index"] = "wrong\t0\n"
    root = write_files(tmp_path, files)
    calls = []
    monkeypatch.setattr(pooch, "retrieve", lambda **kwargs: calls.append(kwargs))
    assert AmazonUniSRec.download(root) == root
    assert sorted(call["fname"] for call in calls) == ["Scientific.text", "Scientific.user2index"]
    call = next(call for call in calls if call["fname"] == "Scientific.text")
    assert call["url"] == amazon_unisrec.AMAZON_BASE_URL + "Scientific.text"
    assert call["url"].startswith("https://raw.githubusercontent.com/ysh-1998/CoWPiRec/db47560")
    assert call["known_hash"] == "md5:" + digests["Scientific.text"]


def test_real_copy_matches_its_checksums():
    real = Path(os.environ.get("METAREC_AMAZON_DIR", Path(__file__).resolve().parents[2]
                               / "shared" / "data" / "amazon-scientific-unisrec"))  # fmt: skip
    if not (real / "Scientific.text.gz").exists() and not (real / "Scientific.text").exists():
        pytest.skip(f"amazon-scientific-unisrec not found in {real} (set METAREC_AMAZON_DIR)")
    assert set(AmazonUniSRec.verify(real).values()) == {"ok"}


# --- tasks -----------------------------------------------------------------------------------


def rows(values: torch.Tensor, keep: torch.Tensor) -> list[int]:
    return values[keep].tolist()


def each_task(task_set):
    for t in range(len(task_set)):
        support, s_mask = task_set.support_item[t], task_set.support_mask[t]
        query, q_mask = task_set.query_item[t], task_set.query_mask[t]
        s_label, q_label = task_set.support_rating[t], task_set.query_rating[t]
        yield (
            task_set.user_ids[t],
            rows(support, s_mask & (s_label == 1)),
            rows(support, s_mask & (s_label == 0)),
            rows(query, q_mask & (q_label == 1)),
            rows(query, q_mask & (q_label == 0)),
        )


def test_new_items_are_in_no_training_or_validation_task(tasks, sequences):
    new = set(new_item_rows(N_ITEMS, 0.2, seed=0).tolist())
    assert len(new) == 60
    for name in ("train", "val", "warm"):
        task_set = (
            tasks.train if name == "train" else tasks.val if name == "val" else tasks.test[name]
        )
        seen = set(rows(task_set.support_item, task_set.support_mask))
        seen |= set(rows(task_set.query_item, task_set.query_mask))
        assert not seen & new, name
    # and, read off the data: no new-item test target is anywhere in meta-training
    targets = {positive for *_, (positive,), _ in each_task(tasks.test["new_item"])}
    assert targets and targets <= new
    assert not targets & set(rows(tasks.train.support_item, tasks.train.support_mask))
    assert not targets & set(rows(tasks.train.query_item, tasks.train.query_mask))


def test_task_layout_and_negatives(tasks, sequences):
    sequence_of = {f"U{u:04d}": s for u, s in enumerate(sequences)}
    new = set(new_item_rows(N_ITEMS, 0.2, seed=0).tolist())
    sets = {"train": tasks.train, "val": tasks.val, **tasks.test}
    assert list(tasks.test) == ["warm", "new_item"]
    for name, task_set in sets.items():
        n_negatives = 3 if name == "train" else 20
        assert task_set.query_mask.sum(1).eq(n_negatives + 1).all(), name
        for user, positives, support_negatives, query_positive, query_negatives in each_task(
            task_set
        ):
            sequence = sequence_of[user]
            (target,) = query_positive
            warm = [item for item in sequence if item not in new]
            assert len(query_negatives) == n_negatives
            assert len(support_negatives) == len(positives) >= 1
            negatives = support_negatives + query_negatives
            assert len(set(negatives)) == len(negatives)  # distinct, support and query alike
            assert not set(negatives) & set(sequence)  # never the user's item, past or future
            if name == "new_item":
                assert target in new and set(query_negatives) <= new
                position = max(p for p, item in enumerate(sequence) if item == target)
                before = [item for item in sequence[:position] if item not in new]
                assert positives == before[-6:]
            elif name != "train":  # training tasks: see the next test
                assert target == warm[-1] and positives == warm[:-1][-6:]
            assert not (set(positives) | set(support_negatives)) & new
        where = (task_set.query_rating == 1).float().argmax(1)
        assert len(where.unique()) > 1  # the positive's place in the query varies


def test_training_tasks_are_every_prefix_but_the_last_item(tasks, sequences):
    new = set(new_item_rows(N_ITEMS, 0.2, seed=0).tolist())
    targets: dict[str, list[int]] = {}
    for user, _, _, (target,), _ in each_task(tasks.train):
        targets.setdefault(user, []).append(target)
    for user, got in targets.items():
        warm = [item for item in sequences[int(user[1:])] if item not in new]
        assert got == warm[1:-1]  # leave-one-out: the last warm item is the test target
    for t, (user, positives, *_) in enumerate(each_task(tasks.train)):
        warm = [item for item in sequences[int(user[1:])] if item not in new]
        position = 1 + t - tasks.train.user_ids.index(user)  # the user's tasks are in order
        assert positives == warm[:position][-6:]
    train, val, warm = (set(part.user_ids) for part in (tasks.train, tasks.val, tasks.test["warm"]))
    assert not train & val and not train & warm and not val & warm


def test_warmup_scores_the_training_users_last_item(root, tasks, sequences):
    warmup = build(root, "task.warm=[warmup]", "task.cold=false")
    assert list(warmup.test) == ["warm_warmup"]
    assert torch.equal(warmup.train.support_item, tasks.train.support_item)
    assert set(warmup.test["warm_warmup"].user_ids) >= set(tasks.train.user_ids)
    new = set(new_item_rows(N_ITEMS, 0.2, seed=0).tolist())
    for user, positives, _, (target,), _ in each_task(warmup.test["warm_warmup"]):
        warm = [item for item in sequences[int(user[1:])] if item not in new]
        assert target == warm[-1] and positives == warm[:-1][-6:]


def test_same_seed_same_tasks_other_seed_other_tasks(root, tasks):
    again = build(root, "task.warm=[heldout]")
    for name in ("train", "val"):
        one, two = getattr(tasks, name), getattr(again, name)
        for key in ("user", "support_item", "support_rating", "query_item", "query_rating"):
            assert torch.equal(getattr(one, key), getattr(two, key)), (name, key)
    assert torch.equal(tasks.test["new_item"].query_item, again.test["new_item"].query_item)
    other = build(root, "data.seed=1")
    assert other.val.user_ids != tasks.val.user_ids


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        ("task.target=rating", ConfigError, "use task.target=like"),
        ("task.warm=[seen]", ConfigError, "task.warm"),
        ("data.amazon.negatives=250", DataError, "needs 250 negatives but only"),
        ("data.amazon.new_item_fraction=1.5", ConfigError, "new_item_fraction"),
    ],
)
def test_bad_settings_are_named(root, override, error, match):
    with pytest.raises(error, match=match):
        build(root, override)


# --- metrics ---------------------------------------------------------------------------------


def brute_force(score: float, competitors: list[float], k: int) -> tuple[float, float, float]:
    """HR@k, NDCG@k, RR averaged over the positions the tied competitors allow."""
    above = sum(other > score for other in competitors)
    tied = sum(other == score for other in competitors)
    positions = range(above, above + tied + 1)
    hr = sum(p < k for p in positions) / len(positions)
    ndcg = sum(1 / math.log2(p + 2) for p in positions if p < k) / len(positions)
    rr = sum(1 / (p + 1) for p in positions) / len(positions)
    return hr, ndcg, rr


def test_sampled_metrics_match_brute_force_with_ties_and_padding():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 12, (60, 30), generator=gen).double() / 4  # many ties
    labels = (torch.rand(60, 30, generator=gen) < 0.08).double()
    labels[:, 0] = 1.0
    mask = torch.rand(60, 30, generator=gen) < 0.85
    mask[:, 0] = True
    mask[5] = False
    mask[5, 1] = True  # a task without positive: NaN
    labels[5, 1] = 0
    got = ranking_metrics(scores.float(), labels, mask, k=5)
    for t in range(60):
        real = mask[t].nonzero().flatten().tolist()
        negatives = [float(scores[t, j]) for j in real if labels[t, j] == 0]
        positives = [float(scores[t, j]) for j in real if labels[t, j] == 1]
        if not positives:
            assert all(math.isnan(got[key][t]) for key in got)
            continue
        expected = np.mean([brute_force(s, negatives, 5) for s in positives], axis=0)
        assert [float(got[key][t]) for key in ("hr@5", "ndcg@5", "mrr")] == pytest.approx(
            expected.tolist(), abs=1e-12
        )


def test_without_ties_the_metrics_are_torchmetrics():
    from torchmetrics.functional.retrieval import (
        retrieval_hit_rate,
        retrieval_normalized_dcg,
        retrieval_reciprocal_rank,
    )

    gen = torch.Generator().manual_seed(1)
    scores = torch.rand(40, 100, generator=gen)
    labels = torch.zeros(40, 100)
    labels[torch.arange(40), torch.randint(0, 100, (40,), generator=gen)] = 1
    got = ranking_metrics(scores, labels, torch.ones(40, 100, dtype=torch.bool))
    for t in range(40):
        target = labels[t].bool()
        assert float(got["hr@10"][t]) == float(retrieval_hit_rate(scores[t], target, top_k=10))
        assert float(got["ndcg@10"][t]) == pytest.approx(
            float(retrieval_normalized_dcg(scores[t], target, top_k=10)), abs=1e-6
        )
        assert float(got["mrr"][t]) == pytest.approx(
            float(retrieval_reciprocal_rank(scores[t], target)), abs=1e-6
        )


def test_a_constant_scorer_scores_chance_and_random_tie_breaking_agrees():
    constant = ranking_metrics(torch.zeros(3, 100), torch.eye(100)[:3], torch.ones(3, 100) > 0)
    assert constant["hr@10"].tolist() == pytest.approx([0.1] * 3)
    assert constant["mrr"].tolist() == pytest.approx([sum(1 / p for p in range(1, 101)) / 100] * 3)
    # the expectation is what shuffling the tied items gives on average
    gen = torch.Generator().manual_seed(2)
    above, tied = 4, 11
    got = expected_rank_metrics(torch.tensor([above]), torch.tensor([tied]), k=10)
    draws = above + torch.randint(0, tied + 1, (200_000,), generator=gen)
    assert float(got["hr@10"][0]) == pytest.approx(float((draws < 10).double().mean()), abs=4e-3)
    ndcg = torch.where(draws < 10, 1 / torch.log2(draws + 2.0), 0.0).mean()
    assert float(got["ndcg@10"][0]) == pytest.approx(float(ndcg), abs=4e-3)


@pytest.mark.parametrize("chunk_size", [7, 1000])
def test_full_ranking_matches_brute_force(chunk_size):
    gen = torch.Generator().manual_seed(3)
    n_tasks, n_items = 25, 90
    table = torch.randint(0, 30, (n_tasks, n_items), generator=gen).float()  # ties
    target = torch.randint(0, n_items, (n_tasks,), generator=gen)
    history = torch.randint(0, n_items, (n_tasks, 12), generator=gen)
    history[0, 0] = target[0]  # seen before: still competes as the target
    history_mask = torch.rand(n_tasks, 12, generator=gen) < 0.7
    candidates = torch.arange(0, n_items, 2)
    for allowed in (None, candidates):
        got = full_ranking_metrics(lambda items: table.gather(1, items), target, history,
                                   history_mask, n_items, k=10, chunk_size=chunk_size,
                                   candidates=allowed)  # fmt: skip
        for t in range(n_tasks):
            excluded = set(history[t][history_mask[t]].tolist()) | {int(target[t])}
            pool = range(n_items) if allowed is None else allowed.tolist()
            competitors = [float(table[t, i]) for i in pool if i not in excluded]
            expected = brute_force(float(table[t, target[t]]), competitors, 10)
            assert [float(got[key][t]) for key in ("full_hr@10", "full_ndcg@10", "full_mrr")] == (
                pytest.approx(list(expected), abs=1e-12)
            )


# --- learners --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["maml", "protonet"])
def test_learners_rank_next_items_sampled_and_full(root, tasks, name):
    torch.manual_seed(0)
    learner = build_learner(config(root, f"learner.name={name}"), tasks)
    batch = tasks.test["warm"][torch.arange(len(tasks.test["warm"]))]
    with torch.enable_grad():
        scores = learner(batch).detach()
    sampled = ranking_metrics(scores, batch["query_rating"], batch["query_mask"])
    full = learner_full_ranking(learner, batch, len(tasks.dataset.items), chunk_size=128)
    for values in (*sampled.values(), *full.values()):
        assert torch.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
    # every sampled negative competes in the full ranking too, so the full rank is no better
    assert (full["full_mrr"] <= sampled["mrr"] + 1e-6).all()


def test_one_epoch_run_with_item_text_gives_finite_metrics(root, tmp_path, tiny_text_model):
    cfg = config(
        root,
        "learner.name=maml",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        "item.text=join",
        f"encoder.model={tiny_text_model}",
        f"encoder.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'runs'}",
    )
    result = train(cfg)
    assert list(result.metrics) == ["warm", "new_item"]
    for scenario, values in result.metrics.items():
        assert values["n_tasks"] > 0
        for key in ("mae", "auc", "ndcg@3"):
            assert math.isfinite(values[key]), (scenario, key)
