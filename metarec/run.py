"""A finished run, loaded: adapt to a new user's ratings and score items.

The run's dataset and tasks are rebuilt from its config, the learner on them, and the best
checkpoint's weights loaded (:mod:`metarec.checkpoint`); ``metarec.load`` makes one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarec.build import build_learner, prepare_tasks
from metarec.checkpoint import load_weights
from metarec.config.schema import RunConfig
from metarec.data.scenarios import ColdStartTasks
from metarec.data.schema import FeatureTable
from metarec.errors import ConfigError, DataError
from metarec.learners.base import MetaLearner
from metarec.learners.evaluator import query_predictions
from metarec.resume import read_checkpoint

# The id of the user row a loaded run adds for a new user (no real id contains "<").
NEW_USER = "<new user>"

Ratings = Mapping[str, float] | Iterable[tuple[str, float]]


def check_ratings(
    ratings: Ratings,
    items: FeatureTable,
    scale: tuple[float, float] | None,
    where: Callable[[int], str] = lambda i: f"rating {i + 1}",
) -> list[tuple[str, float]]:
    """(item id, rating) pairs, each item known to ``items``, rated once, with a finite rating
    inside ``scale`` (when given); a bad one is a ``DataError`` naming ``where(index)``."""
    pairs = list(ratings.items() if isinstance(ratings, Mapping) else ratings)
    if not pairs:
        raise DataError("no ratings given: adapting needs at least one (item, rating)")
    seen: dict[str, int] = {}
    out = []
    for index, pair in enumerate(pairs):
        try:
            item, rating = pair
            item, rating = str(item), float(rating)
        except (TypeError, ValueError) as err:
            raise DataError(f"{where(index)}: expected (item, rating), got {pair!r}") from err
        if item not in items.row_of:
            example = ", ".join(items.ids[:3])
            raise DataError(
                f"{where(index)}: unknown item '{item}' (the run's dataset has {len(items)} "
                f"items, ids such as {example})"
            )
        if item in seen:
            raise DataError(f"{where(index)}: item '{item}' rated twice ({where(seen[item])})")
        low, high = scale if scale is not None else (-math.inf, math.inf)
        if not (math.isfinite(rating) and low <= rating <= high):
            allowed = f"{low:g}..{high:g}" if scale is not None else "a finite number"
            raise DataError(f"{where(index)}: rating {rating:g} of item '{item}' is not {allowed}")
        seen[item] = index
        out.append((item, rating))
    return out


def typical_row(table: FeatureTable) -> dict[str, np.ndarray]:
    """Each feature's most common value (the most common value set of a multi-valued
    feature; all padding where most rows have none) among the table's rows."""
    row = {}
    for name, values in table.values.items():
        unique, counts = np.unique(np.asarray(values), axis=0, return_counts=True)
        row[name] = unique[int(np.argmax(counts))]
    return row


class Run:
    """A finished run, loaded: its config, tasks and learner (best checkpoint), ready to
    adapt to a new user's ratings and score items (:meth:`predict`, :meth:`recommend`).

    The user table gets one more row, :data:`NEW_USER`, for a user who is not in the
    dataset: each user feature at its most common value (:func:`typical_row`) unless
    ``features`` say otherwise. MeLU's user features are one value each with no "unknown"
    value the network was trained on (its padding embedding is never trained), so a
    typical user is the neutral choice; ``user=ID`` uses a dataset user's own row instead.
    """

    def __init__(self, config: RunConfig, checkpoint: Path | None, device: str = "cpu"):
        self.config = config
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self._state = read_checkpoint(checkpoint) if checkpoint else None
        self._base_tasks = prepare_tasks(config)
        # One (tasks, learner) per new-user feature row asked for; the typical row's first.
        self._variants: dict[tuple, tuple[ColdStartTasks, MetaLearner]] = {}
        self.tasks, self.learner = self._variant(typical_row(self._base_tasks.dataset.users))

    def _tasks_with(self, row: dict[str, np.ndarray]) -> ColdStartTasks:
        """The run's tasks over a dataset whose user table ends with ``row`` as NEW_USER
        (item-task runs, which cannot predict for a user, keep their tables)."""
        if self.config.task.unit != "user":
            return self._base_tasks
        dataset = self._base_tasks.dataset
        users = dataset.users
        values = {
            name: np.concatenate([table, np.asarray(row[name])[None]])
            for name, table in users.values.items()
        }
        tasks = copy.copy(self._base_tasks)  # the task sets are shared, not copied
        tasks.dataset = replace(
            dataset, users=replace(users, ids=[*users.ids, NEW_USER], values=values)
        )
        return tasks

    def _variant(self, row: dict[str, np.ndarray]) -> tuple[ColdStartTasks, MetaLearner]:
        """The tasks and the loaded learner whose NEW_USER row is ``row`` (built once)."""
        key = tuple((name, tuple(np.asarray(row[name]).ravel().tolist())) for name in sorted(row))
        if key not in self._variants:
            tasks = self._tasks_with(row)
            with torch.random.fork_rng(devices=[]):  # initial weights, replaced by the saved
                learner = build_learner(self.config, tasks)
            if self.config.trainer.precision.startswith("64"):
                learner = learner.double()  # as Lightning ran it, before its weights load
            if self._state is not None:
                load_weights(learner, self._state, self.checkpoint, strict=True)
            self._variants[key] = (tasks, learner.to(self.device).eval())
        return self._variants[key]

    @property
    def item_ids(self) -> list[str]:
        """Every item id of the run's dataset, in its order."""
        return list(self.tasks.dataset.items.ids)

    @property
    def rating_scale(self) -> tuple[float, float] | None:
        """The range a rating must lie in; None for like runs (ratings become 0/1 likes)."""
        return None if self.config.task.target == "like" else self.tasks.dataset.rating_scale

    def _feature_row(self, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
        users = self._base_tasks.dataset.users
        row = typical_row(users)
        for name, value in features.items():
            if name not in users.vocab:
                raise DataError(f"unknown user feature '{name}' (known: {', '.join(users.vocab)})")
            wanted = [value] if isinstance(value, str) or not isinstance(value, Iterable) else value
            vocab, width = users.vocab[name], users.values[name].shape[1]
            if len(wanted) > width:
                raise DataError(f"user feature '{name}': {len(wanted)} values, at most {width}")
            indices = np.zeros(width, dtype=users.values[name].dtype)
            for position, one in enumerate(wanted):
                if str(one) not in vocab:
                    shown = ", ".join(vocab[:8]) + (", ..." if len(vocab) > 8 else "")
                    raise DataError(f"user feature '{name}': unknown value '{one}' ({shown})")
                indices[position] = vocab.index(str(one)) + 1
            row[name] = indices
        return row

    def predict(
        self,
        ratings: Ratings,
        items: Sequence[str] | None = None,
        user: str | None = None,
        features: Mapping[str, Any] | None = None,
        where: Callable[[int], str] | None = None,
    ) -> dict[str, float]:
        """Adapt to a user's ``ratings`` ((item id, rating) pairs or ``{item: rating}``) and
        score ``items`` (default: every item of the dataset), in their order.

        ``user``: the id of a dataset user whose features to use; else a new user with
        ``features`` (``{"gender": "F", "age": "25"}``), the rest at their most common values.
        Scores are predicted ratings, or like probabilities for ``task.target=like`` runs
        (whose ratings become likes at ``task.like_threshold``). ``where(i)`` names rating i in
        error messages.
        """
        if self.config.task.unit != "user":
            raise ConfigError(
                "key 'task.unit': this run's tasks are items; its learner adapts to an item's "
                "raters, not to a user's ratings, so it cannot predict for a new user"
            )
        if user is not None and features:
            raise ConfigError("give a dataset user or a new user's features, not both")
        dataset = self.tasks.dataset
        pairs = check_ratings(
            ratings, dataset.items, self.rating_scale, **({"where": where} if where else {})
        )
        if user is not None:
            if str(user) not in self._base_tasks.dataset.users.row_of:
                raise DataError(f"unknown user '{user}' (not in the run's dataset)")
            learner, user_row = self.learner, dataset.users.row_of[str(user)]
        else:
            row = self._feature_row(features or {})
            learner, user_row = self._variant(row)[1], len(dataset.users) - 1
        ids = self.item_ids if items is None else [str(item) for item in items]
        unknown = [item for item in ids if item not in dataset.items.row_of]
        if unknown:
            raise DataError(f"unknown item(s) to score: {', '.join(unknown[:5])}")
        scores = self._scores(learner, user_row, pairs, ids)
        return dict(zip(ids, scores, strict=True))

    def _scores(self, learner, user_row: int, pairs, ids: list[str]) -> list[float]:
        rows = self.tasks.dataset.items.row_of
        dtype = torch.float64 if self.config.trainer.precision.startswith("64") else torch.float32
        support = torch.tensor([[rating for _, rating in pairs]], dtype=dtype)
        if self.config.task.target == "like":
            support = (support >= self.config.task.like_threshold).to(dtype)
        query = torch.tensor([[rows[item] for item in ids]])
        batch = {
            "user": torch.tensor([user_row]),
            "support_item": torch.tensor([[rows[item] for item, _ in pairs]]),
            "support_rating": support,
            "support_mask": torch.ones(support.shape, dtype=torch.bool),
            "query_item": query,
            "query_rating": torch.zeros(query.shape, dtype=dtype),  # never read by a learner
            "query_mask": torch.ones(query.shape, dtype=torch.bool),
        }
        pred, _ = query_predictions(learner, {k: v.to(self.device) for k, v in batch.items()})
        return pred[0].cpu().tolist()

    def recommend(
        self,
        ratings: Ratings,
        k: int | None = 10,
        user: str | None = None,
        features: Mapping[str, Any] | None = None,
        exclude_rated: bool = True,
        where: Callable[[int], str] | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` best-scored items (all with ``k`` None or 0), best first, after adapting
        to ``ratings`` (see :meth:`predict`); the rated items are left out unless
        ``exclude_rated=False``."""
        pairs = list(ratings.items() if isinstance(ratings, Mapping) else ratings)
        scores = self.predict(pairs, user=user, features=features, where=where)
        if exclude_rated:  # the pairs passed predict's checks
            rated = {str(item) for item, _ in pairs}
            scores = {item: score for item, score in scores.items() if item not in rated}
        ranked = sorted(scores.items(), key=lambda pair: -pair[1])  # stable: ties by item order
        return ranked[:k] if k else ranked
