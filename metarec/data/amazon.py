"""Loader for Amazon review sequences in UniSRec's format (``data.name: amazon-unisrec``).

The data folder holds six RecBole atomic files of one domain (``data.amazon.domain``, default
``Scientific``), each plain (``NAME``) or gzipped (``NAME.gz``; the plain file wins):

* ``<domain>.item2index`` and ``<domain>.user2index``: ``raw id \\t index``, no header; the
  indices are 0..n-1 and are what the ``.inter`` files hold;
* ``<domain>.text``: a header, then ``item_id:token \\t text:token_seq`` per item (its ASIN and
  title + category + brand);
* ``<domain>.{train,valid,test}.inter``: a header, then ``user_id:token \\t
  item_id_list:token_seq \\t item_id:token``: a user index, the items before the target
  (space-separated indices, the most recent 50 at most) and the target. ``test`` holds each
  user's last item, ``valid`` the one before it, ``train`` every earlier prefix.

A user's full chronological sequence is rebuilt by chaining their lines: each line's history
plus its target is the next line's history (its last 50 items, past the cap). On the
Scientific files this gives 8,442 users and 59,427 interactions, UniSRec's published count
(the test history alone, capped at 50, holds 59,384). The dataset has no ratings and no
timestamps: it is implicit (``binary``; scored by ranking), the sequence order its only
time. Items carry their id and their text; users one constant feature
(:data:`USER_FEATURE`), so that no user is told apart by an id embedding a held-out user
never trains: a network tells users apart only through their support sets. Every problem
with the input is a :class:`DataError` naming the file and the line.

The dataset (its files' md5s and download URL) is :mod:`metarec.datasets.amazon_unisrec`.
Nothing is downloaded when loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metarec.data.files import read_text, require_files
from metarec.data.schema import STATES, FeatureTable, RecDataset, UserRatings
from metarec.data.vocab import unique_ids
from metarec.errors import DataError

DOMAIN = "Scientific"
SUFFIXES = ("text", "item2index", "user2index", "train.inter", "valid.inter", "test.inter")
SPLITS = ("train", "valid", "test")
TEXT_HEADER = ("item_id:token", "text:token_seq")
INTER_HEADER = ("user_id:token", "item_id_list:token_seq", "item_id:token")
_SNIPPET_CHARS = 60
# Users' one categorical feature, the same value for all (see load_amazon).
USER_FEATURE = "user"


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Tab-separated fields of each non-empty line, with 1-based line numbers."""
    text = read_text(path)
    numbered = enumerate((line.rstrip("\r") for line in text.split("\n")), start=1)
    return [(number, line.split("\t")) for number, line in numbered if line.strip()]


def _bad(path: Path, number: int, problem: str, fields: list[str]) -> DataError:
    line = "\t".join(fields)
    return DataError(f"{path.name} line {number}: {problem}: {line[:_SNIPPET_CHARS]!r}")


def _check_header(path: Path, lines: list[tuple[int, list[str]]], header: tuple[str, ...]):
    """The lines after the header, which must be ``header`` exactly."""
    if not lines or tuple(field.strip() for field in lines[0][1]) != header:
        number, fields = lines[0] if lines else (1, [])
        raise _bad(path, number, f"expected the header {chr(9).join(header)!r}", fields)
    return lines[1:]


def _index_file(path: Path, key: str) -> list[str]:
    """Raw ids of an ``id \\t index`` file, listed by index (which must be 0..n-1)."""
    rows = []
    for number, fields in _lines(path):
        if len(fields) != 2 or not fields[1].strip().isdigit():
            raise _bad(path, number, f"expected '{key} <tab> index'", fields)
        rows.append((number, fields[0].strip(), int(fields[1])))
    unique_ids(((number, raw) for number, raw, _ in rows), path.name, key)  # empty, repeated
    line_of: dict[int, int] = {}
    for number, raw, index in rows:
        if index in line_of:
            raise DataError(
                f"{path.name} line {number}: index {index} of {key} {raw} is on line "
                f"{line_of[index]} too"
            )
        if index >= len(rows):
            raise DataError(
                f"{path.name} line {number}: index {index} of {key} {raw}; the {len(rows)} "
                f"indices must be 0..{len(rows) - 1}"
            )
        line_of[index] = number
    rows.sort(key=lambda row: row[2])
    return [raw for _, raw, _ in rows]


def _texts(path: Path, item_ids: list[str], index_name: str) -> dict[str, str]:
    """Each item's text; every item of the ``item2index`` file (``index_name``) must have one."""
    items = set(item_ids)
    texts: dict[str, str] = {}
    for number, fields in _check_header(path, _lines(path), TEXT_HEADER):
        if len(fields) != 2:
            raise _bad(
                path, number, f"expected 2 tab-separated fields, found {len(fields)}", fields
            )
        item = fields[0].strip()
        if item not in items:
            raise _bad(path, number, f"item {item!r} is not in the item2index file", fields)
        if item in texts:
            raise _bad(path, number, f"second text of item {item}", fields)
        texts[item] = " ".join(fields[1].split())
    if len(texts) < len(item_ids):  # a file cut short would leave items without text, unseen
        first = next(item for item in item_ids if item not in texts)
        raise DataError(
            f"{path.name}: {len(item_ids) - len(texts)} of the {len(item_ids)} items of "
            f"{index_name} have no text line, the first item {first} (is the file cut short?)"
        )
    return texts


# One interaction line: (history, target, file name, line number).
Line = tuple[tuple[int, ...], int, str, int]


def _index(path: Path, number: int, value: str, size: int, what: str, fields) -> int:
    if not value.isdigit() or int(value) >= size:
        raise _bad(path, number, f"{what} {value!r} is not an index 0..{size - 1}", fields)
    return int(value)


def _interactions(path: Path, n_users: int, n_items: int) -> dict[int, list[Line]]:
    """Each user's lines of one ``.inter`` file."""
    by_user: dict[int, list[Line]] = {}
    for number, fields in _check_header(path, _lines(path), INTER_HEADER):
        if len(fields) != 3:
            raise _bad(
                path, number, f"expected 3 tab-separated fields, found {len(fields)}", fields
            )
        user = _index(path, number, fields[0].strip(), n_users, "user", fields)
        history = tuple(
            _index(path, number, value, n_items, "item", fields) for value in fields[1].split()
        )
        target = _index(path, number, fields[2].strip(), n_items, "item", fields)
        by_user.setdefault(user, []).append((history, target, path.name, number))
    return by_user


def _chain(user: str, lines: list[Line]) -> list[int]:
    """The user's sequence: the line with the shortest history, then the line whose history is
    it plus its target (or that without its first item, at the history cap), and so on; every
    line must be used, the valid line second to last and the test line last."""
    by_history: dict[tuple[int, ...], Line] = {}
    for line in lines:
        if line[0] in by_history:
            first = by_history[line[0]]
            raise DataError(
                f"{line[2]} line {line[3]}: user {user} has this history already "
                f"({first[2]} line {first[3]})"
            )
        by_history[line[0]] = line
    line = min(lines, key=lambda entry: len(entry[0]))
    sequence, used = [*line[0], line[1]], [line]
    window = (*line[0], line[1])
    while True:
        following = by_history.get(window)
        if following is None and window:  # past the cap the oldest item drops out
            window = window[1:]
            following = by_history.get(window)
        if following is None or following in used:
            break
        sequence.append(following[1])
        used.append(following)
        window = (*window, following[1])
    if len(used) < len(lines):
        # the earliest point of the sequence that does not chain
        stray = min(
            (entry for entry in lines if entry not in used),
            key=lambda entry: (len(entry[0]), entry[2], entry[3]),
        )
        raise DataError(
            f"{stray[2]} line {stray[3]}: user {user}'s history does not continue the sequence "
            "the other lines give (each line's history + target is the next line's history)"
        )
    ends = [entry[2].removesuffix(".gz").rsplit(".", 2)[-2] for entry in used[-2:]]
    if ends != ["valid", "test"]:
        last = used[-1]
        raise DataError(
            f"{last[2]} line {last[3]}: user {user}'s sequence must end with their valid line "
            f"then their test line (leave-one-out), but ends with {' then '.join(ends)}"
        )
    return sequence


def load_amazon(root: str | Path, name: str, domain: str = DOMAIN) -> RecDataset:
    """The UniSRec-format files of ``domain`` in ``root`` as an implicit dataset.

    ``states["warm_state"]`` lists each user with an interaction, their items in
    chronological order, every "rating" 1.0; the other states are empty (the splits are made
    by :mod:`metarec.data.implicit`).
    """
    root = Path(root).expanduser()
    hint = (
        f"run `metarec data download {name} --root DIR`, or point data.root at the folder "
        "holding them (data.amazon.domain names their prefix)"
    )
    names = {suffix: f"{domain}.{suffix}" for suffix in SUFFIXES}
    found = require_files(root, names.values(), name, hint)
    paths = {suffix: found[file] for suffix, file in names.items()}
    item_ids = _index_file(paths["item2index"], "item")
    user_ids = _index_file(paths["user2index"], "user")
    texts = _texts(paths["text"], item_ids, paths["item2index"].name)
    lines: dict[int, list[Line]] = {}
    for split in SPLITS:
        for user, user_lines in _interactions(
            paths[f"{split}.inter"], len(user_ids), len(item_ids)
        ).items():
            lines.setdefault(user, []).extend(user_lines)
    sequences = []
    for user in sorted(lines):
        sequence = [item_ids[item] for item in _chain(user_ids[user], lines[user])]
        sequences.append(UserRatings(user_ids[user], sequence, np.ones(len(sequence), np.float32)))
    items = FeatureTable(
        item_ids, {"item_id": np.arange(1, len(item_ids) + 1)[:, None]}, {"item_id": item_ids}
    )
    # Every user has the same one feature value: a held-out user's own id embedding would never
    # train (noise at test), so a network personalises through the support set alone.
    users = FeatureTable(
        user_ids,
        {USER_FEATURE: np.ones((len(user_ids), 1), dtype=np.int64)},
        {USER_FEATURE: ["user"]},
    )
    return RecDataset(
        name=name,
        users=users,
        items=items,
        item_text={item: texts[item] for item in item_ids},
        states={state: sequences if state == "warm_state" else [] for state in STATES},
        rating_scale=(0.0, 1.0),
        meta={"domain": domain},
        binary=True,
    )
