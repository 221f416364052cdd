"""Embeddings of categorical user and item features (MeLU's input layer), and their tables
cut to the rows a task uses (what per-task adaptation of the tables adapts)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from metarec.data.schema import FeatureTable


class LocalRows(NamedTuple):
    """The rows of one embedding table that each task of a batch looks up."""

    rows: torch.Tensor  # (T, R): each task's distinct table rows, ascending, row 0 first
    count: torch.Tensor  # (T,): how many of them each task has (the rest is row 0 padding)

    def find(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local positions of table rows ``ids`` (T, M) (0 where a row is not the task's),
        and whether each is the task's: a binary search, no table-sized arrays."""
        past = torch.arange(self.rows.shape[1], device=ids.device) >= self.count[:, None]
        keys = self.rows.masked_fill(past, torch.iinfo(self.rows.dtype).max)  # ascending
        position = torch.searchsorted(keys, ids.contiguous()).clamp(max=self.rows.shape[1] - 1)
        found = keys.gather(1, position) == ids
        return torch.where(found, position, 0), found


def local_rows(used: torch.Tensor) -> LocalRows:
    """Each task's distinct rows among ``used`` (T, N), ascending, row 0 (padding) first."""
    ids = torch.cat([used.new_zeros(len(used), 1), used], 1).sort(1).values
    first = torch.ones_like(ids, dtype=torch.bool)  # the first of each run of equal rows
    first[:, 1:] = ids[:, 1:] != ids[:, :-1]
    rank = first.cumsum(1) - 1
    count = rank[:, -1] + 1
    size = int(count.max())
    rows = ids.new_zeros(len(ids), size + 1)
    rows.scatter_(1, torch.where(first, rank, size), ids)  # repeats go to a spare column
    return LocalRows(rows[:, :size], count)


def whole_rows(tasks: int, vocabulary: int, device: torch.device) -> LocalRows:
    """Every row of a ``vocabulary``-row table for each of ``tasks`` tasks, as :func:`local_rows`
    gives a task's own rows: a small table is kept whole, as cutting it costs more than it
    saves."""
    rows = torch.arange(vocabulary, device=device).expand(tasks, vocabulary)
    return LocalRows(rows, torch.full((tasks,), vocabulary, device=device))


def mixing(index: torch.Tensor, weight: torch.Tensor | None, table: torch.Tensor) -> torch.Tensor:
    """(T, N, R) weights of each task's local ``table`` (T, R, dim) rows in its N rows'
    feature embeddings, from their local ``index`` (T, N, width) and value ``weight``
    (T, N, width, 1; None: one value per row, weight 1): the embeddings are ``mix @ table``.

    A batched matmul of a small dense matrix, forward and backward, costs a fraction of a
    lookup's scatter-add backward under ``vmap`` (``benchmarks/meta_training.py``).
    """
    mix = table.new_zeros(*index.shape[:-1], table.shape[1])
    weight = torch.ones_like(index, dtype=mix.dtype) if weight is None else weight.squeeze(-1)
    return mix.scatter_add_(-1, index, weight.to(mix))


class TaskRows(NamedTuple):
    """A :class:`FeatureEmbedding`'s weights and buffers for a batch of tasks that each read
    only their own rows, named as in the module (``functional_call``'s names below it)."""

    tables: dict[str, torch.Tensor]  # those given, cut to each task's rows (T, R, dim)
    buffers: dict[str, torch.Tensor]  # all of them, those indexed by row cut to the tasks' rows
    local: dict[str, LocalRows]  # the rows each cut table holds, by weight name
    per_task: frozenset[str]  # the buffers that now have a leading task dimension


class FeatureEmbedding(nn.Module):
    """Looks up a row's features and embeds each one; multi-valued features are averaged.

    The feature tables are buffers, so the module maps row indices straight to a vector of
    ``len(features) * dim`` and works under ``torch.func`` transforms unchanged. When the table
    carries text embeddings (``item.text``), their linear projection to ``dim`` is one more
    part, joined to the categorical features or, with ``table.text_only``, replacing them.
    """

    def __init__(self, table: FeatureTable, dim: int):
        super().__init__()
        self.names = [] if table.text_only else sorted(table.values)
        self.embeddings = nn.ModuleDict(
            {name: nn.Embedding(size, dim) for name, size in table.vocab_sizes().items()}
        )
        self.weighted = []  # features averaged over their values (multi-valued or missing)
        for name in self.names:
            values = np.asarray(table.values[name], dtype=np.int64)
            self.register_buffer(f"table_{name}", torch.from_numpy(values), persistent=False)
            # Set only for tasks that read their own rows (``task_rows``)
            self.register_buffer(f"mix_{name}", None, persistent=False)
            if values.shape[1] > 1 or not (values > 0).all():
                present = values > 0  # each value weighs 1 / count, padding 0
                weight = present / np.maximum(present.sum(1, keepdims=True), 1)
                weight = torch.from_numpy(weight[..., None]).float()  # (rows, width, 1)
                self.register_buffer(f"weight_{name}", weight, persistent=False)
                self.weighted.append(name)
        self.out_dim = len(self.names) * dim
        self.text_projection = self.text_model = None
        if table.text is not None:  # frozen embeddings, rebuilt from the cache, not saved
            text = torch.as_tensor(np.asarray(table.text, dtype=np.float32))
            self.register_buffer("text", text, persistent=False)
            self.text_projection = nn.Linear(text.shape[-1], dim)
            self.out_dim += dim
        elif table.text_model is not None:  # the encoder itself, trained with the network
            self.text_model = table.text_model()
            self.text_projection = nn.Linear(self.text_model.out_dim, dim)
            self.out_dim += dim

    @property
    def row_buffers(self) -> list[str]:
        """The buffers indexed by row, which :meth:`task_rows` cuts to a task's rows; none
        when a text tower reads the rows' ids."""
        if self.text_model is not None:
            return []
        tables = [f"table_{name}" for name in self.names] + [f"weight_{n}" for n in self.weighted]
        return tables + (["text"] if self.text_projection else [])

    def task_rows(
        self, tables: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], rows: torch.Tensor
    ) -> TaskRows | None:
        """This module for tasks that each read only ``rows`` (T, N), called with every
        position in them, ``0..N-1`` in order (in the shape of a task's ids): every row-indexed
        buffer cut to each task's rows, and each embedding table in ``tables`` (the module's
        weights adapted per task, by their names in it) cut to the rows those reach (kept whole
        when it has no more rows than the entries a task reads: :func:`whole_rows`); such a
        feature is then embedded by its ``mix_`` buffer (:func:`mixing`) in place of its value
        and weight buffers. ``buffers`` are the module's. None when there is nothing to cut: no
        table of its in ``tables``, or a text tower that reads the ids itself.
        """
        keys = {name: f"embeddings.{name}.weight" for name in self.names}
        if not any(key in tables for key in keys.values()) or not self.row_buffers:
            return None
        tables, buffers, local, per_task = dict(tables), dict(buffers), {}, set()
        for buffer in self.row_buffers:
            per_task.add(buffer)
            buffers[buffer] = buffers[buffer][rows]  # (T, N, ...)
        for name, key in keys.items():
            if key not in tables:
                continue
            values = buffers.pop(f"table_{name}")  # (T, N, width) of task rows
            table, entries = tables[key], values[0].numel()
            if len(table) <= entries:  # no fewer reads than rows: each task gets the whole table
                local[key] = whole_rows(len(values), len(table), values.device)
                tables[key], index = table.expand(len(values), *table.shape), values
            else:  # each task its own rows: sorted, then each entry's position among them
                local[key] = found = local_rows(values.flatten(1))
                tables[key] = table[found.rows]
                index = found.find(values.flatten(1))[0].view(values.shape)
            weight = buffers.pop(f"weight_{name}", None)
            buffers[f"mix_{name}"] = mixing(index, weight, tables[key])
            per_task.add(f"mix_{name}")
        return TaskRows(tables, buffers, local, frozenset(per_task & set(buffers)))

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` of any shape -> embeddings of shape ``rows.shape + (out_dim,)``."""
        parts = []
        for name in self.names:
            mix = getattr(self, f"mix_{name}")
            if mix is not None:  # (rows, values) weights of a task's own embedding rows
                parts.append(self._mix_rows(mix, rows) @ self.embeddings[name].weight)
                continue
            index = getattr(self, f"table_{name}")[rows]  # (..., width), 0 = padding
            if name in self.weighted:  # the mean of the values' embeddings
                weight = getattr(self, f"weight_{name}")[rows]
                parts.append((self.embeddings[name](index) * weight).sum(-2))
            else:  # exactly one value per row
                parts.append(self.embeddings[name](index.squeeze(-1)))
        if self.text_model is not None:
            parts.append(self.text_projection(self.text_model(rows)))
        elif self.text_projection is not None:
            parts.append(self.text_projection(self.text[rows]))
        # Every part is (..., dim): stacked, whose gradient is a view of each part's, where a
        # concatenation's second-order gradient zero-fills a full-width copy per part.
        return torch.stack(parts, dim=-2).flatten(-2)

    @staticmethod
    def _mix_rows(mix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The ``mix`` rows of ``rows``: after :meth:`task_rows` these are the positions of the
        rows it was cut to, all in order (``localize``'s), so the rows as they are, no gather."""
        if rows.numel() != mix.shape[0]:
            raise ValueError(
                f"a table cut to {mix.shape[0]} rows per task (task_rows) is called with "
                f"{rows.numel()} positions; call it with every position, in order"
            )
        return mix.view(*rows.shape, mix.shape[-1])
