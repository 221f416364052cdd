"""The in-memory form every dataset loader produces: features, text and rating states."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

STATES = ("warm_state", "user_cold_state", "item_cold_state", "user_and_item_cold_state")
# A published warm-up test (MetaHIN's): held-out ratings of warm users, a state of its own.
WARM_UP_STATE = "warm_up_state"


@dataclass
class FeatureTable:
    """Categorical features of users or items, as padded vocabulary indices.

    ``values[name]`` has shape ``(n_rows, width)``; index 0 is padding, so a single-valued
    feature has width 1 and a multi-valued one (genres, actors) is padded with zeros.
    ``vocab[name]`` lists the values, ``vocab[name][i - 1]`` being the value of index ``i``.
    """

    ids: list[str]
    values: dict[str, np.ndarray]
    vocab: dict[str, list[str]]
    # Text embeddings of the rows (n_rows, dim), joined to the categorical features or, with
    # ``text_only``, replacing them (``item.text`` in the config; see ``attach_item_text``).
    text: np.ndarray | None = None
    text_only: bool = False
    # Or, with ``encoder.trainable: full | lora``, a builder of the trainable text encoder of
    # the rows (a module mapping rows to embeddings, with an ``out_dim``).
    text_model: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        self.row_of = {raw_id: row for row, raw_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def vocab_sizes(self) -> dict[str, int]:
        """Embedding-table sizes, padding index included."""
        return {name: len(values) + 1 for name, values in self.vocab.items()}


@dataclass
class UserRatings:
    """One user's ratings within a state, in file order."""

    user: str
    items: list[str]
    ratings: np.ndarray  # float32, same order as ``items``
    # Which ratings are the query set, where a published split fixes it (else drawn).
    query: np.ndarray | None = None


@dataclass
class RecDataset:
    """Users, items (with features and text) and the four MeLU rating states."""

    name: str
    users: FeatureTable
    items: FeatureTable
    item_text: dict[str, str]
    states: dict[str, list[UserRatings]]
    rating_scale: tuple[float, float] = (1.0, 5.0)
    meta: dict = field(default_factory=dict)
    # True when the ratings are 0/1 likes (``task.target: like``): networks output a probability.
    binary: bool = False
    # The registered DataSource class that loaded it (its tasks and scoring); None: defaults.
    source: Any = None

    def swapped(self) -> RecDataset:
        """The same data with the roles of users and items exchanged (``task.unit: item``).

        Each state lists, per item, the users who rated it (in order of first rating), so that
        the user-task machinery builds item tasks unchanged: a task's ``user`` is then an item
        row and its ``*_item`` fields are user rows; networks built on this view embed the
        item's features (and text) on the task side.
        """
        states = {}
        for state, users in self.states.items():
            by_item: dict[str, tuple[list[str], list[float]]] = {}
            for user in users:
                for item, rating in zip(user.items, user.ratings.tolist(), strict=True):
                    raters, ratings = by_item.setdefault(item, ([], []))
                    raters.append(user.user)
                    ratings.append(rating)
            states[state] = [
                UserRatings(item, raters, np.asarray(ratings, dtype=np.float32))
                for item, (raters, ratings) in by_item.items()
            ]
        return replace(self, users=self.items, items=self.users, states=states)
