"""The loaders refuse what they cannot represent, naming the file and the line, user, item or
value, and warn where the data make a run meaningless; the embedding cache rebuilds a file
whose contents changed on disk. Each case is built in tmp_path; where the CLI reaches it, the
error is its one stderr line and exit code 2."""

from __future__ import annotations

import gzip
import json
import logging
import re
import struct
from pathlib import Path

import pytest
import torch

from metarec.catalog import load_dataset
from metarec.cli import main
from metarec.config.load import load_config
from metarec.config.text import EncoderConfig, ItemConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.encoders.attach import attach_item_text, check_inputs
from metarec.encoders.features import FeatureEmbedding
from metarec.errors import DataError

from .test_amazon import N_ITEMS, item_id, make_sequences, unisrec_files
from .test_amazon import write_files as write_amazon
from .test_melu_loader import FakeMelu, load_melu
from .test_tallrec import write_ml100k


def cli_error(capsys, *args: str) -> str:
    """Run ``metarec train`` on the synthetic experiment with ``args``; its one error line."""
    code = main(["train", "experiments/synthetic/maml.yaml", "trainer.progress_bar=false", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("metarec: error:")]
    assert err == line
    return line.removeprefix("metarec: error: ")


# --- MeLU: a user key repeated in a state file -----------------------------------------------

# warm_state with user 1 listed twice: json.loads would keep only ["4"] and drop movies 1, 2.
REPEATED_X = '{"1": ["1", "2"], "2": ["3", "5"], "1": ["4"]}'
REPEATED_Y = '{"1": [5, 3], "2": [1, 2], "1": [4]}'


@pytest.mark.parametrize("name", ["warm_state.json", "warm_state_y.json"])
def test_melu_user_listed_twice_is_refused(tmp_path, capsys, name):
    fake = FakeMelu(tmp_path / "melu", gz=False)
    fake.files[name] = REPEATED_X if name == "warm_state.json" else REPEATED_Y
    # What json.loads alone would make of it: user 1's first list silently gone.
    assert json.loads(fake.files[name])["1"] in (["4"], [4])
    root = fake.write()
    message = (
        f"{name}: user 1 is listed 2 times; JSON keeps only the last list, so the others' "
        "ratings would be lost"
    )
    with pytest.raises(DataError) as caught:
        load_melu(root)
    assert str(caught.value) == message
    out = tmp_path / "runs"
    assert cli_error(capsys, "data.name=melu-ml1m", f"data.root={root}", f"output_dir={out}") == (
        message
    )


def test_melu_user_listed_three_times_gives_the_count(tmp_path):
    fake = FakeMelu(tmp_path / "melu", gz=True)
    fake.files["user_cold_state.json"] = '{"3": ["1"], "3": ["6"], "4": ["2"], "3": ["1"]}'
    with pytest.raises(DataError, match=r"^user_cold_state\.json\.gz: user 3 is listed 3 times"):
        load_melu(fake.write())


# --- Amazon: the text file cut short ----------------------------------------------------------


def test_amazon_text_cut_short_names_the_first_item_without_text(tmp_path, capsys):
    files = unisrec_files(make_sequences())
    kept = 150  # the header and the texts of items 0..149 survive
    files["Scientific.text"] = "".join(files["Scientific.text"].splitlines(True)[: 1 + kept])
    root = write_amazon(tmp_path / "amazon", files)
    message = (
        f"Scientific.text: {N_ITEMS - kept} of the {N_ITEMS} items of Scientific.item2index "
        f"have no text line, the first item {item_id(kept)} (is the file cut short?)"
    )
    with pytest.raises(DataError) as caught:
        load_dataset(load_config(None, ["data.name=amazon-unisrec", f"data.root={root}"]).data)
    assert str(caught.value) == message
    args = ["data.name=amazon-unisrec", "task.target=like", f"data.root={root}"]
    assert cli_error(capsys, *args, f"output_dir={tmp_path / 'runs'}") == message


# --- ML-100K: ages and timestamps out of range ------------------------------------------------


def ml100k_config(root: Path):
    return load_config(None, ["data.name=tallrec-ml100k", f"data.root={root}", "task.target=like"])


def set_age(root: Path, line: int, age: str) -> None:
    """Replace the age (second field) of ``u.user``'s ``line`` (1-based)."""
    lines = (root / "u.user").read_text().splitlines()
    fields = lines[line - 1].split("|")
    fields[1] = age
    lines[line - 1] = "|".join(fields)
    (root / "u.user").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "age, problem",
    [
        ("-23", "age -23 is outside 1..120"),
        ("0", "age 0 is outside 1..120"),
        ("200", "age 200 is outside 1..120"),
        ("abc", "age 'abc' is not an integer"),
    ],
)
def test_ml100k_implausible_age_is_refused(tmp_path, capsys, age, problem):
    root = tmp_path / "ml"
    write_ml100k(root)
    set_age(root, 7, age)
    with pytest.raises(DataError) as caught:
        load_dataset(ml100k_config(root).data)
    assert str(caught.value) == f"u.user line 7: {problem}"
    args = ["data.name=tallrec-ml100k", "task.target=like", f"data.root={root}"]
    assert (
        cli_error(capsys, *args, f"output_dir={tmp_path / 'runs'}") == f"u.user line 7: {problem}"
    )


def test_ml100k_ages_at_the_bounds_load_into_the_movielens_groups(tmp_path):
    root = tmp_path / "ml"
    write_ml100k(root)
    set_age(root, 1, "1")
    set_age(root, 2, "120")
    users = load_dataset(ml100k_config(root).data).users
    groups = [users.vocab["age"][index - 1] for index in users.values["age"][:2, 0]]
    assert groups == ["1", "56"]  # ML-1M's README: 1 is "under 18", 56 is "56+"


def test_ml100k_negative_timestamp_is_refused(tmp_path):
    root = tmp_path / "ml"
    write_ml100k(root)
    lines = gzip.decompress((root / "u.data.gz").read_bytes()).decode().splitlines()
    user, item, rating, _ = lines[4].split("\t")
    lines[4] = f"{user}\t{item}\t{rating}\t-5"
    (root / "u.data.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError) as caught:
        load_dataset(ml100k_config(root).data)
    assert str(caught.value) == "u.data.gz line 5: timestamp -5 is below 0"


# --- a feature table that leaves items or users without input ---------------------------------

RATINGS = ["user,item,rating,timestamp"] + [
    f"u{user},i{item},{1 + (user * item) % 5},{100 * user + item}"
    for user in range(1, 101)
    for item in range(1, 31)
    if (user + item) % 3
]


def write_csv(root: Path, items: list[str] | None = None, users: list[str] | None = None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings.csv").write_text("\n".join(RATINGS) + "\n")
    for name, lines in (("items.csv", items), ("users.csv", users)):
        if lines is not None:
            (root / name).write_text("\n".join(lines) + "\n")
    return root


def csv_overrides(root: Path, items: bool = False, users: bool = False) -> list[str]:
    return [
        "data.name=csv",
        f"data.root={root}",
        *(["data.csv.items=items.csv", "data.csv.text_columns=[title]"] if items else []),
        *(["data.csv.users=users.csv"] if users else []),
    ]


ITEMS_ID_AND_TEXT = ["item,title"] + [f"i{item},Film number {item}" for item in range(1, 31)]
NO_ITEM_INPUT = (
    "items.csv: the items have no feature column (only the id and text columns) and "
    "item.text=none, so a network has no input for them; add feature columns to it, or set "
    "item.text=join|replace"
)


def test_items_with_neither_features_nor_text_are_refused(tmp_path, capsys):
    root = write_csv(tmp_path / "data", items=ITEMS_ID_AND_TEXT)
    dataset = load_dataset(load_config(None, csv_overrides(root, items=True)).data)
    # What a network would read for them: nothing (torch.cat of no parts at the first step).
    assert FeatureEmbedding(dataset.items, dim=4).out_dim == 0
    with pytest.raises(DataError) as caught:
        check_inputs(dataset, "none")
    assert str(caught.value) == NO_ITEM_INPUT
    args = [*csv_overrides(root, items=True), f"output_dir={tmp_path / 'runs'}"]
    assert cli_error(capsys, *args) == NO_ITEM_INPUT
    # A learner that reads no features (the bias baseline) runs on the same table.
    runs = tmp_path / "mean"
    assert (
        main(
            [
                "train",
                "synthetic/mean",
                *csv_overrides(root, items=True),
                "data.min_ratings=4",
                "data.query_size=2",
                f"output_dir={runs}",
                "trainer.progress_bar=false",
            ]
        )
        == 0
    )
    assert len(list(runs.glob("*/metrics.json"))) == 1


def test_users_with_only_an_id_are_refused(tmp_path, capsys):
    root = write_csv(tmp_path / "data", users=["user"] + [f"u{user}" for user in range(1, 101)])
    dataset = load_dataset(load_config(None, csv_overrides(root, users=True)).data)
    assert FeatureEmbedding(dataset.users, dim=4).out_dim == 0
    message = (
        "users.csv: the users have no feature column (only the id), so a network has no input "
        "for them; add feature columns to it"
    )
    with pytest.raises(DataError) as caught:
        check_inputs(dataset, "join")
    assert str(caught.value) == message
    args = [*csv_overrides(root, users=True), f"output_dir={tmp_path / 'runs'}"]
    assert cli_error(capsys, *args) == message


def test_join_without_item_features_warns_that_text_is_all(tmp_path, caplog, tiny_text_model):
    root = write_csv(tmp_path / "data", items=ITEMS_ID_AND_TEXT)
    dataset = load_dataset(load_config(None, csv_overrides(root, items=True)).data)
    encoder = EncoderConfig(model=str(tiny_text_model), cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="metarec.encoders.attach"):
        check_inputs(dataset, "join")
    joined = attach_item_text(dataset, ItemConfig(text="join"), encoder, progress=False)
    assert caplog.messages == [
        "items.csv: item.text=join, but the items have no feature column: they are told apart "
        "by their text alone, as with item.text=replace"
    ]
    # What the network reads of an item: the projected text and nothing else.
    embedding = FeatureEmbedding(joined.items, dim=4)
    assert embedding.names == [] and embedding.out_dim == 4


# --- item tasks without a user table ----------------------------------------------------------

USERS_ALIKE = (
    "csv: task.unit=item, but every user has the same features (no user table, e.g. "
    "data.csv.users unset): a network that reads them cannot tell an item's query users apart, "
    "so its ranking is chance (AUC 0.5); add a user table with feature columns"
)
ITEM_TASKS = ["task.unit=item", "task.support_size=4", "data.query_size=4"]


def test_item_tasks_without_a_user_table_warn(tmp_path, caplog):
    cfg = load_config(None, [*csv_overrides(write_csv(tmp_path / "data")), *ITEM_TASKS])
    dataset = load_dataset(cfg.data)
    # Every user has the same features, so a network scores an item the same for each of them.
    net = FeatureEmbedding(dataset.users, dim=4)
    embedded = net(torch.arange(len(dataset.users)))
    assert torch.equal(embedded, embedded[:1].expand_as(embedded))
    with caplog.at_level(logging.WARNING, logger="metarec.data.scenarios"):
        ColdStartTasks(dataset, cfg.data, cfg.task)
    assert caplog.messages.count(USERS_ALIKE) == 1


def test_item_tasks_with_user_features_do_not_warn(tmp_path, caplog):
    users = ["user,age"] + [f"u{user},{20 + user % 4}" for user in range(1, 101)]
    root = write_csv(tmp_path / "data", users=users)
    cfg = load_config(None, [*csv_overrides(root, users=True), *ITEM_TASKS])
    with caplog.at_level(logging.WARNING, logger="metarec.data.scenarios"):
        ColdStartTasks(load_dataset(cfg.data), cfg.data, cfg.task)
    assert USERS_ALIKE not in caplog.messages


# --- the embedding cache: contents changed on disk --------------------------------------------


def _cache():
    pytest.importorskip("safetensors")
    from metarec.encoders import cache

    return cache


def flip_bit_in(path: Path, tensor: str, byte: int) -> None:
    """Flip the lowest bit of byte ``byte`` of ``tensor``'s data in a safetensors file: the
    file stays valid safetensors (its header is untouched)."""
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    start, _ = json.loads(data[8 : 8 + size])[tensor]["data_offsets"]
    data[8 + size + start + byte] ^= 1
    path.write_bytes(bytes(data))


def test_cache_with_a_flipped_bit_is_reported_and_rebuilt(tmp_path):
    cache = _cache()
    from safetensors.torch import load_file

    path = tmp_path / "text-x.safetensors"
    embeddings = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7
    digests = cache.text_digests(["a", "b", "c"])
    cache.write_cache(path, "k", digests, embeddings)
    assert torch.equal(cache.read_cache(path, "k")[1], embeddings)
    flip_bit_in(path, "embeddings", 4 * 5)  # the lowest mantissa bit of row 1, column 1
    # Still a readable safetensors file, with one number moved: only the checksum tells.
    moved = load_file(path)["embeddings"]
    assert (moved != embeddings).sum() == 1 and torch.isfinite(moved).all()
    with pytest.warns(cache.CacheWarning, match=re.escape(str(path))) as caught:
        assert cache.read_cache(path, "k") is None
    assert str(caught[0].message) == (
        f"embedding cache {path} does not match its checksum (its contents changed on disk); "
        "rebuilding it"
    )


def test_cache_with_a_flipped_text_hash_is_reported(tmp_path):
    cache = _cache()
    path = tmp_path / "text-x.safetensors"
    cache.write_cache(path, "k", cache.text_digests(["a", "b"]), torch.ones(2, 3))
    flip_bit_in(path, "hashes", 40)  # a byte of the second text's sha256
    with pytest.warns(cache.CacheWarning, match="does not match its checksum"):
        assert cache.read_cache(path, "k") is None


def test_cache_without_a_checksum_is_reported(tmp_path):
    cache = _cache()
    from safetensors.torch import save_file

    path = tmp_path / "text-x.safetensors"
    hashes = bytearray(b"".join(cache.text_digests(["a", "b"])))
    tensors = {
        "embeddings": torch.ones(2, 3),
        "hashes": torch.frombuffer(hashes, dtype=torch.uint8).reshape(2, 32),
    }
    save_file(tensors, path, metadata={"key": "k", "format": cache.FORMAT})  # the older format
    with pytest.warns(cache.CacheWarning, match="has no checksum of its contents"):
        assert cache.read_cache(path, "k") is None


def test_embed_texts_rebuilds_a_flipped_cache_to_the_encoders_numbers(tmp_path, tiny_text_model):
    cache = _cache()
    cfg = EncoderConfig(model=str(tiny_text_model), cache_dir=str(tmp_path))
    texts = ["a drama film", "the comedy movie", "directed by a director"]
    right = cache.embed_texts(texts, cfg, progress=False)
    path = cache.cache_path(cache.cache_key(cfg), tmp_path)
    flip_bit_in(path, "embeddings", 4 * right.shape[1] + 2)  # inside row 1
    with pytest.warns(cache.CacheWarning, match="does not match its checksum") as caught:
        rebuilt = cache.embed_texts(texts, cfg, progress=False)
    assert len(caught) == 1
    assert torch.equal(rebuilt, right)
    assert torch.equal(cache.read_cache(path, cache.cache_key(cfg))[1], right)  # good again
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left
