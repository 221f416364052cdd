"""Loader for TaNP's Last.fm files (``lastfm_20`` of Lin et al., WWW 2021): ``data.name:
tanp-lastfm`` (the dataset and its tasks: :mod:`metarec.datasets.tanp_lastfm`).

The data folder holds, each plain (``NAME``) or gzipped (``NAME.gz``; the plain file wins):

* ``user_list.json`` and ``item_list.json``: JSON lists of the user and item ids (strings);
* TaNP's user split, as its preprocessing pickled it: ``{part}_dict_x_{ratio}.pkl``
  (``{user: [item, ...]}``) and ``{part}_dict_y_{ratio}.pkl`` (``{user: [label, ...]}``, 1 a
  listened artist, 0 a sampled one) for the parts ``training`` (0.7), ``valid`` (0.1) and
  ``test`` (0.2), users in the order TaNP drew them.

A pickle can run code when loaded, so these are read by an unpickler that refuses every global
(a class or function to build or call): TaNP's hold only dicts, lists, strings and ints, and a
file that names a global fails with one line naming the file and the global. Every other
problem is a :class:`DataError` naming the file and the user or item at fault. Users carry one
constant feature (no id: a test user's id embedding would never train), items their id.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path

import numpy as np

from metarec.data.files import read_text, require_files
from metarec.data.schema import STATES, RecDataset, UserRatings
from metarec.data.tables import id_table
from metarec.errors import DataError, one_line

USER_LIST, ITEM_LIST = "user_list.json", "item_list.json"
# TaNP's parts and the ratio in their file names (its --train_ratio and --valid_ratio).
PARTS = {"training": 0.7, "valid": 0.1, "test": 0.2}
# Where each part's users are kept in the RecDataset: meta-training users, new test users, and
# the validation users in a state of their own.
VALIDATION_STATE = "validation_users"
PART_STATES = {"training": STATES[0], "valid": VALIDATION_STATE, "test": STATES[1]}


def part_files(part: str) -> tuple[str, str]:
    """The items and labels files of a part (``training_dict_x_0.700000.pkl``, ...)."""
    return tuple(f"{part}_dict_{xy}_{PARTS[part]:f}.pkl" for xy in ("x", "y"))


FILES = (USER_LIST, ITEM_LIST, *(name for part in PARTS for name in part_files(part)))


class _Refused(pickle.UnpicklingError):
    """A pickle that names a global."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds builtin containers and scalars only: every global is refused."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")


def read_plain_pickle(path: Path) -> object:
    """The object pickled in ``path`` (plain or ``.gz``), if it names no global."""
    try:
        raw = path.read_bytes()
        raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
        return _PlainUnpickler(io.BytesIO(raw)).load()
    except _Refused as err:
        raise DataError(
            f"{path.name}: refused to unpickle: it names the global {err} (only dicts, lists, "
            "strings and numbers are read)"
        ) from None
    except Exception as err:  # a malformed pickle raises anything; it runs no code
        raise DataError(f"{path.name}: not a readable pickle ({one_line(err)})") from err


def _ids(path: Path, what: str) -> list[str]:
    """A JSON list of distinct string ids."""
    try:
        ids = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path.name}: not JSON ({err})") from err
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise DataError(f"{path.name}: expected a JSON list of {what} ids (non-empty strings)")
    if len(set(ids)) != len(ids):
        repeated = next(i for n, i in enumerate(ids) if i in ids[:n])
        raise DataError(f"{path.name}: {what} {repeated} is listed twice")
    return ids


def _user_lists(path: Path, kind: type) -> dict[str, list]:
    """A pickled ``{user: [value, ...]}`` whose users are strings and values ``kind``."""
    data = read_plain_pickle(path)
    if not isinstance(data, dict):
        raise DataError(f"{path.name}: expected a dict of user -> list, got {type(data).__name__}")
    for user, values in data.items():
        if not isinstance(user, str) or not isinstance(values, list):
            raise DataError(f"{path.name}: user {user!r}: expected a string user and a list")
        bad = next((v for v in values if type(v) is not kind), None)
        if bad is not None:
            raise DataError(f"{path.name}: user {user}: {bad!r} is not a {kind.__name__}")
    return data


def _read_part(
    paths: dict[str, Path], part: str, users: set[str], items: set[str]
) -> list[UserRatings]:
    """A part's users (in file order), each with their items and 0/1 labels."""
    x_name, y_name = part_files(part)
    items_of, labels_of = _user_lists(paths[x_name], str), _user_lists(paths[y_name], int)
    if list(items_of) != list(labels_of):
        raise DataError(f"{y_name}: its users are not those of {x_name}, in the same order")
    rated = []
    for user, user_items in items_of.items():
        labels = labels_of[user]
        if user not in users:
            raise DataError(f"{x_name}: user {user} is not in {USER_LIST}")
        unknown = next((item for item in user_items if item not in items), None)
        if unknown is not None:
            raise DataError(f"{x_name}: user {user}: item {unknown} is not in {ITEM_LIST}")
        if len(set(user_items)) != len(user_items):
            raise DataError(f"{x_name}: user {user} lists an item twice")
        if len(labels) != len(user_items):
            raise DataError(
                f"{y_name}: user {user} has {len(labels)} labels for {len(user_items)} items"
            )
        if any(label not in (0, 1) for label in labels):
            raise DataError(f"{y_name}: user {user}: a label is not 0 or 1")
        rated.append(UserRatings(user, list(user_items), np.array(labels, dtype=np.float32)))
    return rated


def load_lastfm(root: str | Path, name: str, hint: str) -> RecDataset:
    """TaNP's Last.fm users, items and user split under ``root``; the training users in the
    warm state, the test users in the user-cold state, the validation users in
    :data:`VALIDATION_STATE`, each part in file order. ``hint`` says how to get the files."""
    root = Path(root)
    paths = require_files(root, FILES, name, hint)
    user_ids, item_ids = _ids(paths[USER_LIST], "user"), _ids(paths[ITEM_LIST], "item")
    known_users, known_items = set(user_ids), set(item_ids)
    states: dict[str, list[UserRatings]] = {state: [] for state in STATES}
    placed: dict[str, str] = {}
    for part, state in PART_STATES.items():
        states[state] = _read_part(paths, part, known_users, known_items)
        for user in states[state]:
            if user.user in placed:
                raise DataError(
                    f"{part_files(part)[0]}: user {user.user} is also in "
                    f"{part_files(placed[user.user])[0]}"
                )
            placed[user.user] = part
    return RecDataset(
        name=name,
        users=id_table(user_ids, "user", constant=True),
        items=id_table(item_ids, "item_id", constant=False),
        item_text={},
        states=states,
        rating_scale=(0.0, 1.0),
        meta={
            "root": str(root),
            "parts": {part: len(states[s]) for part, s in PART_STATES.items()},
        },
        binary=True,
    )
