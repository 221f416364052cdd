"""MetaHIN's DBook and MovieLens datasets (metahin-dbook, metahin-ml1m) on small folders in
MetaHIN's format: states, features, refusals, declarations, experiment files and a run.
MetaHIN's nDCG@5 variant: tests/test_metahin_ndcg.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metarec.catalog import DATASETS, load_dataset
from metarec.cli import main
from metarec.config.load import load_config
from metarec.data import metahin as loader
from metarec.data.scenarios import ColdStartTasks, planned_scenarios
from metarec.errors import DataError
from metarec.paths import experiments_folder
from metarec.reproduce.spec import plan

from .test_melu_loader import MOVIES, USERS, write_files

COLD = ("user_cold_testing", "item_cold_testing", "user_and_item_cold_testing")
SCENARIOS = ("warm", "new_user", "new_item", "new_user_item")
# MetaHIN's state -> (the state it is loaded as, the scenario its tasks are tested in).
PLACED = {
    "meta_training": ("warm_state", "warm"),
    "warm_up": ("warm_up_state", "warm_up"),
    COLD[0]: ("user_cold_state", "new_user"),
    COLD[1]: ("item_cold_state", "new_item"),
    COLD[2]: ("user_and_item_cold_state", "new_user_item"),
}
TASKS = ["data.min_ratings=4", "data.query_size=2", "trainer.progress_bar=false"]


def state_files(states: dict[str, dict[str, list[tuple[int, int]]]]) -> dict[str, str]:
    files = {}
    for state, users in states.items():
        files[f"{state}.json"] = json.dumps({u: [i for i, _ in r] for u, r in users.items()})
        files[f"{state}_y.json"] = json.dumps({u: [y for _, y in r] for u, r in users.items()})
    return files


def dbook_states() -> dict[str, dict[str, list[tuple[int, int]]]]:
    """40 users x 30 books: users 31-40 and books 21-30 are new; 40% of the old users' ratings
    of old books are the warm-up. ``{state: {user: [(book, rating), ...]}}``."""
    rng = np.random.default_rng(0)
    states: dict[str, dict] = {name: {} for name in ("meta_training", "warm_up", *COLD)}
    for user in range(1, 41):
        for book in rng.choice(np.arange(1, 31), size=24, replace=False).tolist():
            new = int(user > 30) + 2 * int(book > 20)
            warm = "warm_up" if rng.random() < 0.4 else "meta_training"
            state = COLD[new - 1] if new else warm
            states[state].setdefault(str(user), []).append((book, int(rng.integers(1, 6))))
    return states


def dbook_files(states) -> dict[str, str]:
    """Authors, publishers, years (book 7 has none) and locations, then the states."""
    lines = {
        "book_author.dat": [f"{b}\tA{b % 7}" for b in range(1, 31)],
        "book_publisher.dat": [f"{b}\tP{b % 4}" for b in range(1, 31)],
        "book_year.dat": [f"{b}\t{10 + b % 5}" for b in range(1, 31) if b != 7],
        "user_location.dat": [f"{u}\tL{u % 6}" for u in range(1, 41)],
    }
    return {name: "\n".join(rows) + "\n" for name, rows in lines.items()} | state_files(states)


# MeLU's fake movies 1-6 (tests/test_melu_loader.py) with MetaHIN's relations: actor line 3 and
# director line 4 are MetaHIN's missing name; movie 6 has no director.
ACTORS = "Actor A\nActor B\nnan\nActor C\nActor D\nActor E\n"
DIRECTORS = "Jane Doe\nJohn Roe\nMax Moe\nnan\n"
MOVIE_ACTOR = {"1": [1, 2], "2": [4], "3": [3], "4": [1, 5, 6], "5": [2], "6": [5, 2]}
MOVIE_DIRECTOR = {"1": [1], "2": [2, 1], "3": [4], "4": [3], "5": [1]}
ML_STATES = {
    "meta_training": {"1": [(1, 5), (2, 3), (4, 4)], "2": [(3, 1)]},
    "warm_up": {"2": [(5, 2)], "1": [(3, 4)]},
    "user_cold_testing": {"3": [(1, 4), (6, 4)], "4": [(2, 3)]},
    "item_cold_testing": {"1": [(5, 2), (6, 5)]},
    "user_and_item_cold_testing": {"5": [(5, 1), (6, 5), (3, 3)]},
}


def movielens_files() -> dict[str, str]:
    return {
        "movies_extrainfos.dat": "\r\n".join(MOVIES) + "\r\n",
        "users.dat": "\n".join(USERS) + "\n",
        "m_actor.txt": ACTORS,
        "m_director.txt": DIRECTORS,
        "movie_actor.json": json.dumps(MOVIE_ACTOR),
        "movie_director.json": json.dumps(MOVIE_DIRECTOR),
    } | state_files(ML_STATES)


def decoded(table, feature: str, raw_id: str) -> list[str]:
    return [table.vocab[feature][i - 1] for i in table.values[feature][table.row_of[raw_id]] if i]


def load(name: str, root: Path):
    return load_dataset(load_config(None, [f"data.name={name}", f"data.root={root}"]).data)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_dbook_states_and_features_load_as_published(tmp_path, gz):
    states = dbook_states()
    data = load("metahin-dbook", write_files(tmp_path, dbook_files(states), gz))
    for state, users in states.items():
        loaded = {
            u.user: list(zip(u.items, u.ratings.tolist(), strict=True))
            for u in data.states[PLACED[state][0]]
        }
        assert loaded == {u: [(str(b), float(y)) for b, y in r] for u, r in users.items()}
    for book in range(1, 31):
        assert decoded(data.items, "author", str(book)) == [f"A{book % 7}"]
        assert decoded(data.items, "publisher", str(book)) == [f"P{book % 4}"]
        assert decoded(data.items, "year", str(book)) == ([] if book == 7 else [f"{10 + book % 5}"])
    assert all(decoded(data.users, "location", str(u)) == [f"L{u % 6}"] for u in range(1, 41))
    assert data.item_text == {} and data.source is DATASETS.get("metahin-dbook")


def test_each_state_is_its_scenario_and_the_warm_up_tasks_stay_inside_warm_up(tmp_path):
    states = dbook_states()
    root = write_files(tmp_path, dbook_files(states), gz=False)
    cfg = load_config(
        None, ["data.name=metahin-dbook", f"data.root={root}", *TASKS, "task.warm=[heldout,seen]"]
    )
    tasks = ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    scenarios = {"warm", "warm_seen", "warm_up", "new_user", "new_item", "new_user_item"}
    assert set(tasks.test) == scenarios
    assert set(planned_scenarios(DATASETS.get("metahin-dbook"), cfg.task)) == scenarios
    items = tasks.dataset.items.ids
    for state, (_, scenario) in PLACED.items():
        task_set = tasks.test[scenario]
        for task, user in enumerate(task_set.user_ids):
            rated = []
            for part in ("support", "query"):
                real = getattr(task_set, f"{part}_mask")[task]
                rows = getattr(task_set, f"{part}_item")[task][real].tolist()
                ratings = getattr(task_set, f"{part}_rating")[task][real].tolist()
                rated += [(int(items[row]), y) for row, y in zip(rows, ratings, strict=True)]
            assert sorted(rated) == sorted(states[state][user])


def test_movielens_keeps_melus_features_and_takes_people_from_metahins_relations(tmp_path):
    data = load("metahin-ml1m", write_files(tmp_path, movielens_files(), gz=True))
    movies = data.items
    assert decoded(movies, "actors", "4") == ["Actor A", "Actor D", "Actor E"]
    assert decoded(movies, "actors", "3") == []  # MetaHIN's "nan"
    assert decoded(movies, "director", "2") == ["John Roe", "Jane Doe"]
    assert decoded(movies, "director", "3") == decoded(movies, "director", "6") == []
    assert decoded(movies, "genre", "4") == ["Crime", "Drama", "Thriller"]
    assert decoded(movies, "rate", "5") == ["UNRATED"]
    assert decoded(data.users, "zip", "4") == ["02460"]
    assert data.item_text["1"].startswith("Toy Tale (1995).")
    assert [u.user for u in data.states["warm_up_state"]] == ["2", "1"]  # file order
    assert data.states["user_and_item_cold_state"][0].items == ["5", "6", "3"]


def test_only_melus_merged_movies_may_repeat(tmp_path, monkeypatch):
    files = movielens_files()
    files["meta_training.json"] = json.dumps({"1": [1, 2, 4, 4], "2": [3]})
    files["meta_training_y.json"] = json.dumps({"1": [5, 3, 4, 2], "2": [1]})
    root = write_files(tmp_path, files, gz=False)
    with pytest.raises(DataError, match=r"^meta_training\.json: user 1: item 4 appears 2 times$"):
        load("metahin-ml1m", root)
    monkeypatch.setattr(loader, "MELU_MERGED_MOVIES", {"4": "999"})
    assert load("metahin-ml1m", root).meta["merged_repeats"] == [("warm_state", "1", "4")]


def edited(name: str, change):
    """An edit of the fake files: ``change`` mutates ``name``'s JSON data."""

    def edit(files: dict[str, str]) -> None:
        data = json.loads(files[name])
        change(data)
        files[name] = json.dumps(data)

    return edit


def first_item(name: str, value, user: str | None = None):
    """Set the first entry of ``user``'s list (default: the file's first user) to ``value``."""
    return edited(name, lambda data: data[user or next(iter(data))].__setitem__(0, value))


def appended(name: str, line: str):
    return lambda files: files.update({name: files[name] + line + "\n"})


def new_user(files: dict[str, str]) -> None:
    for name in ("warm_up.json", "warm_up_y.json"):
        edited(name, lambda data: data.update({"99": [1]}))(files)


# (dataset, edit of its fake files, the start of the error); each error names the file first.
BAD = [
    ("dbook", appended("book_year.dat", "31\t1999\tx"), "book_year.dat line 30: expected 'book"),
    ("dbook", appended("book_author.dat", "3\tA9"), "book_author.dat line 31: duplicate book 3"),
    ("dbook", lambda files: files.pop("user_location.dat"), "MetaHIN DBook file(s) not found"),
    ("dbook", first_item("user_cold_testing.json", "5"), "user_cold_testing.json: user 31: item"),
    ("dbook", first_item("item_cold_testing.json", 99), "item_cold_testing.json: user 1: unknown"),
    ("dbook", first_item("meta_training_y.json", 6), "meta_training_y.json: user 1: rating #1"),
    ("dbook", new_user, "warm_up.json: unknown user 99 (not in user_location.dat)"),
    ("ml1m", first_item("movie_actor.json", 99), "movie_actor.json: movie 1: actors id 99 is"),
    ("ml1m", edited("movie_director.json", lambda d: d.update({"77": [1]})), "movie_director"),
    ("ml1m", first_item("warm_up.json", 1, user="1"), "user 1, item 1 is rated in both"),
]


@pytest.mark.parametrize(("name", "edit", "message"), BAD)
def test_a_bad_file_is_one_line_naming_it(tmp_path, capsys, name, edit, message):
    files = dbook_files(dbook_states()) if name == "dbook" else movielens_files()
    edit(files)
    root = write_files(tmp_path / "data", files, gz=False)
    with pytest.raises(DataError) as caught:
        load(f"metahin-{name}", root)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    run = [f"experiments/metahin_{name}/mean.yaml", f"data.root={root}", f"output_dir={root}"]
    assert main(["train", *run]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"metarec: error: {caught.value}"


# --- the datasets' declarations and experiments -------------------------------------------------


def test_files_are_declared_and_fetched_from_metahins_folders(tmp_path, monkeypatch):
    from metarec.datasets import metahin as datasets

    fetched = {}
    fetch = lambda root, url, digests, *_: fetched.update({url: set(digests)})  # noqa: E731
    monkeypatch.setattr(datasets, "download_files", fetch)
    base = "https://raw.githubusercontent.com/rootlu/MetaHIN/master/data/"
    for name, files, upstream, feature in [
        ("metahin-dbook", loader.DBOOK_FILES, base + "dbook/", "book_author.dat"),
        ("metahin-ml1m", loader.MOVIELENS_FILES, base + "movielens/", "users.dat"),
    ]:
        source = DATASETS.get(name)
        assert set(files) <= set(source.files.digests) and source.files.algorithm == "md5"
        fetched.clear()
        source.download(tmp_path)
        assert fetched[upstream] | fetched[upstream + "original/"] == set(source.files.digests)
        assert "meta_training.json" in fetched[upstream]
        assert feature in fetched[upstream + "original/"]
        assert set(source.paper["MetaHIN (paper)"]) == {"warm_up", *SCENARIOS[1:]}


@pytest.mark.parametrize("name", ["metahin-dbook", "metahin-ml1m"])
def test_experiment_folders_run_every_method_on_their_dataset(name):
    folder = experiments_folder(name)
    runs = plan(folder, None, seeds=1, warms=DATASETS.get(name).warm_passes)
    methods = {run.method for run in runs}
    assert (
        set("mean shrunk mf maml melu dropoutnet heater clcrec aldi metaemb mwuf mamo tanp".split())
        <= methods
    )
    assert {load_config(run.config).data.name for run in runs} == {name}
    assert {run.warm for run in runs} == {"heldout,seen"}
    texts = {run.text for run in runs if run.method != "textsim"}  # text only: its own
    assert texts == ({"none"} if name == "metahin-dbook" else {"none", "join"})


def test_a_run_reports_both_ndcgs_on_metahins_warm_up(tmp_path):
    root = write_files(tmp_path / "data", dbook_files(dbook_states()), gz=False)
    out = tmp_path / "runs"
    args = ["experiments/metahin_dbook/shrunk.yaml", f"data.root={root}", *TASKS]
    assert main(["train", *args, f"output_dir={out}"]) == 0
    (run_dir,) = out.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    for scenario in ("warm_up", "new_user", "new_item", "new_user_item"):
        assert 0 < summary[f"test/{scenario}/ndcg@5"] <= 1
        assert summary[f"test/{scenario}/ndcg@5_metahin"] > 0
