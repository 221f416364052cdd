"""TaNP's Last.fm benchmark (metarec/datasets/tanp_lastfm.py, metarec/data/lastfm.py) on small
files the tests write in TaNP's format, and its top-k metrics (metarec/metrics/topk.py) against
torchmetrics, a loop written from TaNP's utils/scorer.py, and hand-computed cases."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import os
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchmetrics.functional.retrieval import retrieval_normalized_dcg, retrieval_precision

from metarec.bias import item_means, predict_bias
from metarec.catalog import DATASETS, load_dataset
from metarec.config.load import load_config
from metarec.data.scenarios import ColdStartTasks
from metarec.datasets import tanp_lastfm
from metarec.errors import ConfigError, DataError
from metarec.metrics.evaluate import EXTRA_METRICS, Scoring
from metarec.metrics.topk import CUTOFFS, topk_metrics, topk_names
from metarec.pipeline import bias_baseline

RATIOS = {"training": 0.7, "valid": 0.1, "test": 0.2}
N_USERS, N_ITEMS = 40, 80


def user_length(index: int) -> int:
    """Interactions of user ``index``: 30..40, every fifth user 22 (too few for a task)."""
    return 22 if index % 5 == 0 else 30 + index % 11


def write_tanp_files(root: Path, seed: int = 2020, gzipped: tuple[str, ...] = ()) -> dict:
    """TaNP's files for 40 users as its preprocessing makes them: user_list.json shuffled by
    Python's random at ``seed`` and cut 70/10/20 with int(); each part pickled as {user:
    [item, ...]} and {user: [label, ...]} in that order. Returns {part: [(user, items,
    labels)]}; the files named in ``gzipped`` are written as NAME.gz."""
    rng = np.random.default_rng(7)
    users = [str(u) for u in range(N_USERS)]
    interactions = {}
    for index, user in enumerate(users):
        items = [str(i) for i in rng.choice(N_ITEMS, size=user_length(index), replace=False)]
        interactions[user] = (items, [int(v) for v in rng.integers(0, 2, size=len(items))])
    files = {
        "user_list.json": json.dumps(users).encode(),
        "item_list.json": json.dumps([str(i) for i in range(N_ITEMS)]).encode(),
    }
    drawn = list(users)
    random.Random(seed).shuffle(drawn)
    n_train, n_valid = int(N_USERS * 0.7), int(N_USERS * 0.1)
    cuts = {
        "training": drawn[:n_train],
        "valid": drawn[n_train : n_train + n_valid],
        "test": drawn[n_train + n_valid :],
    }
    parts = {}
    for part, part_users in cuts.items():
        parts[part] = [(user, *interactions[user]) for user in part_users]
        for xy, column in (("x", 0), ("y", 1)):
            content = {user: interactions[user][column] for user in part_users}
            files[f"{part}_dict_{xy}_{RATIOS[part]:f}.pkl"] = pickle.dumps(content, protocol=3)
    for name, content in files.items():
        if name in gzipped:
            (root / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (root / name).write_bytes(content)
    return parts


def tanp_config(root: Path, *overrides: str):
    return load_config(
        None, ["data.name=tanp-lastfm", f"data.root={root}", "task.target=like", *overrides]
    )


def make_tasks(root: Path, *overrides: str) -> ColdStartTasks:
    cfg = tanp_config(root, *overrides)
    return ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)


def task_items(tasks: ColdStartTasks, task_set, index: int, side: str) -> tuple[list, list]:
    """(item ids, labels) of one task's support or query set, in order."""
    ids = tasks.dataset.items.ids
    mask = getattr(task_set, f"{side}_mask")[index]
    items = getattr(task_set, f"{side}_item")[index][mask].tolist()
    labels = getattr(task_set, f"{side}_rating")[index][mask].tolist()
    return [ids[row] for row in items], labels


@pytest.fixture
def tanp_root(tmp_path):
    parts = write_tanp_files(tmp_path, gzipped=("item_list.json", "test_dict_y_0.200000.pkl"))
    return tmp_path, parts


def test_the_published_split_maps_to_meta_training_validation_and_new_users(tanp_root):
    root, parts = tanp_root
    tasks = make_tasks(root)
    assert set(tasks.test) == {"new_user"}
    for part, task_set in (
        ("training", tasks.train),
        ("valid", tasks.val),
        ("test", tasks.test["new_user"]),
    ):
        kept = [(user, items, labels) for user, items, labels in parts[part] if len(items) >= 30]
        assert task_set.user_ids == [user for user, _, _ in kept]  # TaNP's order, short ones out
        for index, (_, items, labels) in enumerate(kept):
            support, support_labels = task_items(tasks, task_set, index, "support")
            query, query_labels = task_items(tasks, task_set, index, "query")
            assert len(support) == 20 and len(query) == len(items) - 20  # the rest: 10 to 20
            drawn = zip(support + query, support_labels + query_labels, strict=True)
            assert sorted(drawn) == sorted(zip(items, map(float, labels), strict=True))


def test_the_draw_is_tanps_own_random_stream(tanp_root):
    """TaNP's loader, as its code runs: random.seed(2020), shuffle user_list, then for each
    part's users in order with 30..200 interactions, shuffle list(range(n)): support = the
    first 20 of that order, query = the rest."""
    root, parts = tanp_root
    tasks = make_tasks(root, "data.seed=3")  # data.seed leaves TaNP's draw alone
    rng = random.Random(2020)
    rng.shuffle(list(json.loads((root / "user_list.json").read_text())))
    for part, task_set in (
        ("training", tasks.train),
        ("valid", tasks.val),
        ("test", tasks.test["new_user"]),
    ):
        kept = [(items, labels) for _, items, labels in parts[part] if 30 <= len(items) <= 200]
        for index, (items, labels) in enumerate(kept):
            order = list(range(len(items)))
            rng.shuffle(order)
            assert task_items(tasks, task_set, index, "support") == (
                [items[i] for i in order[:20]],
                [float(labels[i]) for i in order[:20]],
            )
            assert task_items(tasks, task_set, index, "query")[0] == [items[i] for i in order[20:]]


def test_sizes_caps_and_the_seeded_draw(tanp_root):
    root, _ = tanp_root
    capped = make_tasks(
        root,
        "data.tanp.max_query=4",
        "data.tanp.support_size=10",
        "data.tanp.query_size=15",
        "data.tanp.max_len=35",
    )
    for task_set in (capped.train, capped.val, capped.test["new_user"]):
        assert (task_set.support_mask.sum(1) == 10).all() and (
            task_set.query_mask.sum(1) == 4
        ).all()
    lengths = {str(u): user_length(u) for u in range(N_USERS)}
    assert all(25 <= lengths[user] <= 35 for user in capped.train.user_ids)
    one, two = (make_tasks(root, "data.tanp.draw=seeded", f"data.seed={s}") for s in (0, 1))
    assert one.train.user_ids == two.train.user_ids  # the same users, other draws
    assert not torch.equal(one.train.query_item, two.train.query_item)


def test_a_split_tanps_seed_does_not_give_cannot_be_replayed(tmp_path):
    write_tanp_files(tmp_path, seed=11)
    with pytest.raises(DataError, match="not user_list.json shuffled .* at seed 2020"):
        make_tasks(tmp_path)
    assert len(make_tasks(tmp_path, "data.tanp.replay_seed=11").train) > 0
    assert len(make_tasks(tmp_path, "data.tanp.draw=seeded").train) > 0


class _Payload:
    """Pickles as a call of os.system: what a malicious file would run on a plain load."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_pickle_naming_a_global_is_refused_in_one_line(tanp_root):
    root, _ = tanp_root
    marker = root / "ran"
    evil = {"0": [_Payload(f"touch {marker}")]}
    (root / "training_dict_x_0.700000.pkl").write_bytes(pickle.dumps(evil))
    with pytest.raises(DataError) as err:
        load_dataset(tanp_config(root).data)
    message = str(err.value)
    assert message.startswith("training_dict_x_0.700000.pkl: refused to unpickle")
    assert "system" in message and "\n" not in message
    assert not marker.exists()  # nothing ran


def labels_of_two(root: Path) -> None:
    items = pickle.loads((root / "valid_dict_x_0.100000.pkl").read_bytes())
    labels = {user: [2] * len(user_items) for user, user_items in items.items()}
    (root / "valid_dict_y_0.100000.pkl").write_bytes(pickle.dumps(labels))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda root: (root / "valid_dict_y_0.100000.pkl").unlink(),
            "file\\(s\\) not found: valid_dict_y_0.100000.pkl",
        ),
        (
            lambda root: (root / "training_dict_y_0.700000.pkl").write_bytes(b"not a pickle"),
            "training_dict_y_0.700000.pkl: not a readable pickle",
        ),
        (labels_of_two, "valid_dict_y_0.100000.pkl: user \\d+: a label is not 0 or 1"),
        (
            lambda root: (root / "item_list.json.gz").write_bytes(gzip.compress(b'["0", "1"]')),
            "training_dict_x_0.700000.pkl: user \\d+: item \\d+ is not in item_list.json",
        ),
    ],
)
def test_bad_files_name_the_file(tanp_root, edit, message):
    root, _ = tanp_root
    edit(root)
    with pytest.raises(DataError, match=message):
        load_dataset(tanp_config(root).data)


def test_ratings_as_targets_are_refused(tanp_root):
    root, _ = tanp_root
    cfg = tanp_config(root, "task.target=rating")
    with pytest.raises(ConfigError, match="use task.target=like"):
        ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)


def test_the_registry_entry_declares_its_files_and_metrics():
    source = DATASETS.get("tanp-lastfm")
    assert source.files.algorithm == "md5" and len(source.files.digests) == 11
    assert set(source.extra_metrics) <= set(EXTRA_METRICS)
    assert source.scenarios == ("new_user",) and source.warm_passes == ("heldout",)
    names = Scoring(source.scoring, extra=source.extra_metrics).names("like", True)
    assert {"precision@5", "ndcg@7", "tanp_precision@10", "tanp_map@10"} <= set(names)


def test_download_unpacks_lastfm_20_and_checks_each_md5(tmp_path, monkeypatch):
    import pooch

    source = tmp_path / "source"
    source.mkdir()
    write_tanp_files(source)
    for name in ("interaction_dict_x.json", "interaction_dict_y.json", "ratings_final.txt"):
        (source / name).write_text("{}")
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in source.iterdir():
            zipped.write(path, f"data/lastfm_20/{path.name}")
    digests = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in source.iterdir()}
    monkeypatch.setattr(pooch, "retrieve", lambda *args, **kwargs: str(archive))
    monkeypatch.setattr(tanp_lastfm, "TANP_MD5", digests)
    root = tmp_path / "root"
    assert tanp_lastfm.TanpLastfm.download(root) == root
    assert {path.name for path in root.iterdir()} >= set(digests)
    monkeypatch.setattr(tanp_lastfm, "TANP_MD5", {**digests, "user_list.json": "0" * 32})
    with pytest.raises(DataError, match="user_list.json do not match their md5"):
        tanp_lastfm.TanpLastfm.download(tmp_path / "other")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DataError, match="data.zip failed \\(OSError: no network\\); .* --root"):
        tanp_lastfm.TanpLastfm.download(tmp_path / "third")


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def scorer_py(ranked: list[int], k: int) -> tuple[float, float]:
    """TaNP's utils/scorer.py precision and AP of labels in ranked order, as its loops run
    them (the ideal list ``t``, a hit while the label is still in it); positions past the
    query are misses."""
    ideal = sorted(ranked, reverse=True)[:k]
    hits, precisions, left_p, hits_p = 0, 0.0, list(ideal), 0
    for position, label in enumerate(ranked[:k]):
        if label in ideal:
            ideal.remove(label)
            hits += 1
            precisions += hits / (position + 1)
        if label in left_p:
            left_p.remove(label)
            hits_p += 1
    return hits_p / k, precisions / k


def test_a_hand_computed_query():
    # Ranked labels 1 0 1 0 0 0 1: n = 7, P = 3.
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    labels = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]])
    out = topk_metrics(scores, labels, torch.ones_like(labels, dtype=torch.bool))
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    expected = {
        "precision@5": 2 / 5,
        "precision@7": 3 / 7,
        "precision@10": 3 / 10,
        # The ideal top 5 is 1 1 1 0 0: the first two negatives ranked count as hits.
        "tanp_precision@5": 4 / 5,
        "tanp_precision@7": 1.0,
        "tanp_precision@10": 7 / 10,
        "ndcg@5": 1.5 / ideal,
        "ndcg@7": (1.5 + 1 / 3) / ideal,
        "ndcg@10": (1.5 + 1 / 3) / ideal,
        # Hits at positions 1-4 add 1/1, 2/2, 3/3, 4/4; divided by k.
        "tanp_map@5": 4 / 5,
        "tanp_map@7": 7 / 7,
        "tanp_map@10": 7 / 10,
    }
    assert list(out) == list(topk_names())
    for name, value in expected.items():
        assert out[name].item() == pytest.approx(value), name


def test_ties_are_averaged_over_their_orders_by_hand():
    # Scores 0.9 | 0.5 0.5, labels 0 | 1 0; k = 2 and the ideal list is 1 0.
    out = topk_metrics(
        torch.tensor([[0.9, 0.5, 0.5]]),
        torch.tensor([[0.0, 1.0, 0.0]]),
        torch.ones(1, 3, dtype=torch.bool),
        cutoffs=(2,),
    )
    assert out["precision@2"].item() == pytest.approx(0.25)  # the positive second half the time
    assert out["tanp_precision@2"].item() == pytest.approx(0.75)  # (0.5 + 1 spare) / 2
    assert out["tanp_map@2"].item() == pytest.approx(0.75)  # orders 0 1 0 -> 1, 0 0 1 -> 0.5


def test_topk_matches_torchmetrics_and_tanps_loops():
    generator = torch.Generator().manual_seed(0)
    n_tasks, width = 40, 16
    scores = torch.rand(n_tasks, width, generator=generator) + 0.1  # torchmetrics: preds > 0
    labels = (torch.rand(n_tasks, width, generator=generator) < 0.4).float()
    lengths = torch.randint(3, width + 1, (n_tasks,), generator=generator)
    mask = torch.arange(width) < lengths[:, None]
    labels[:, 0] = 1.0  # every query has a positive (torchmetrics scores none as 0)
    out = topk_metrics(scores, labels, mask)
    for task in range(n_tasks):
        real = mask[task]
        task_scores, task_labels = scores[task][real], labels[task][real].long()
        ranked = task_labels[task_scores.argsort(descending=True)].tolist()
        for k in CUTOFFS:
            assert out[f"precision@{k}"][task].item() == pytest.approx(
                retrieval_precision(task_scores, task_labels, top_k=k).item(), abs=1e-6
            )
            assert out[f"ndcg@{k}"][task].item() == pytest.approx(
                retrieval_normalized_dcg(task_scores, task_labels, top_k=k).item(), abs=1e-5
            )
            precision, average = scorer_py(ranked, k)
            assert out[f"tanp_precision@{k}"][task].item() == pytest.approx(precision)
            assert out[f"tanp_map@{k}"][task].item() == pytest.approx(average)


def test_tied_scores_give_the_mean_over_every_order():
    generator = torch.Generator().manual_seed(1)
    for _ in range(25):
        width = int(torch.randint(4, 9, (1,), generator=generator))
        scores = torch.randint(0, 3, (1, width), generator=generator).double()
        labels = (torch.rand(1, width, generator=generator) < 0.5).double()
        out = topk_metrics(scores, labels, torch.ones(1, width, dtype=torch.bool))
        groups = [
            [i for i in range(width) if scores[0, i] == value]
            for value in sorted(set(scores[0].tolist()), reverse=True)
        ]
        orders = [
            [i for group in choice for i in group]
            for choice in itertools.product(*(itertools.permutations(g) for g in groups))
        ]
        for k in CUTOFFS:
            runs = [scorer_py([int(labels[0, i]) for i in order], k) for order in orders]
            assert out[f"tanp_precision@{k}"].item() == pytest.approx(np.mean([p for p, _ in runs]))
            assert out[f"tanp_map@{k}"].item() == pytest.approx(np.mean([a for _, a in runs]))


def test_labels_other_than_0_and_1_are_refused():
    with pytest.raises(ValueError, match="0/1 labels"):
        topk_metrics(torch.rand(1, 3), torch.tensor([[1.0, 2.0, 0.0]]), torch.ones(1, 3).bool())


def test_the_runs_metrics_are_the_topk_metrics_of_its_predictions(tanp_root):
    """The bias baseline's new-user summary holds each top-k metric of its own predictions,
    averaged over the tasks."""
    root, _ = tanp_root
    cfg = tanp_config(root)
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    summary = bias_baseline(tasks, cfg.task)["new_user"]
    test = tasks.test["new_user"]
    items, ratings = tasks.train_ratings()
    means = item_means(items, ratings, len(tasks.dataset.items))
    support = {"item": test.support_item, "rating": test.support_rating, "mask": test.support_mask}
    pred = predict_bias(support, test.query_item, means, (0.0, 1.0))
    expected = topk_metrics(pred, test.query_rating, test.query_mask)
    for name, values in expected.items():
        assert summary[name] == pytest.approx(values.mean().item()), name
