"""The inner loop of gradient-based learners on any unmodified nn.Module, via torch.func.

Fast weights are a dict of named tensors; ``functional_call`` runs the network with them and
``grad`` differentiates the support loss. Called under ``vmap`` it adapts a meta-batch at once.

Embedding tables are most of a recommender's weights (MeLU's network on ML-1M: 96%), yet a task
looks up a few hundred of their rows. :func:`adapt_tasks` gives each task only the rows it
uses (:func:`localize`); plain SGD leaves every other row where it was, so this is the same
adaptation as with whole per-task copies of the tables, at a small fraction of the memory
traffic. The feature tables that map a user or item to its embedding rows are cut the same
way, to the users and items each task reads, and a cut feature is then embedded as one small
dense matrix of weights on the task's own rows (:func:`mixing`). :func:`predict_tasks` reads
adapted rows where the support set touched them and the initial rows elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

Params = dict[str, torch.Tensor]


class Weights(NamedTuple):
    """A network's weights as the inner loop takes them: ``fast`` adapt per task, ``frozen``
    do not, ``buffers`` are the network's buffers."""

    fast: Params
    frozen: Params
    buffers: Params


def trainable(name: str, param: nn.Parameter) -> bool:
    """Whether ``param`` trains (``requires_grad``): what fine-tuning adapts per task."""
    return param.requires_grad


def split_params(
    net: nn.Module, adapts: Callable[[str, nn.Parameter], bool] = trainable, detach: bool = False
) -> Weights:
    """``net``'s parameters split by ``adapts(name, parameter)`` into fast (true) and frozen
    weights, in ``named_parameters`` order, beside its buffers. ``detach``: no graph back to
    the parameters (adapting needs inner gradients only, not a meta-gradient)."""
    fast, frozen = {}, {}
    for name, param in net.named_parameters():
        (fast if adapts(name, param) else frozen)[name] = param.detach() if detach else param
    return Weights(fast, frozen, dict(net.named_buffers()))


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the last dimension where ``mask`` is true (per task if batched)."""
    weight = mask.to(pred.dtype)
    return ((pred - target) ** 2 * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


# Probabilities are clipped this far from 0 and 1 so that the log-loss stays finite.
EPS = 1e-6


def masked_bce(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of probabilities over the last dimension where ``mask`` is true."""
    weight = mask.to(prob.dtype)
    prob = prob.clamp(EPS, 1 - EPS)
    loss = -(target * prob.log() + (1 - target) * (1 - prob).log())
    return (loss * weight).sum(-1) / weight.sum(-1).clamp(min=1.0)


Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class InnerLoop(NamedTuple):
    """How each task adapts: ``steps`` gradient steps of the support ``loss``
    (``task_loss(task.target)``) at ``lr``, one learning rate or one tensor per fast weight
    (Meta-SGD). With ``first_order`` the inner gradients are constants to the meta-gradient."""

    steps: int
    lr: float | Params
    first_order: bool = False
    loss: Loss = masked_mse


def task_loss(target: str) -> Loss:
    """The per-task loss of a ``task.target``: MSE for ratings, cross-entropy for likes."""
    return masked_bce if target == "like" else masked_mse


def call(net: nn.Module, fast: Params, frozen: Params, buffers: Params, *args) -> torch.Tensor:
    """``net(*args)`` with its parameters replaced by ``fast`` and ``frozen``."""
    return functional_call(net, ({**frozen, **fast}, buffers), args)


def inner_loop(
    net: nn.Module, weights: Weights, support: Mapping[str, torch.Tensor], inner: InnerLoop
) -> Params:
    """``inner.steps`` gradient steps of ``weights.fast`` on one task's support set; returns
    the fast weights."""
    _, frozen, buffers = weights
    lr = inner.lr

    def support_loss(fast: Params) -> torch.Tensor:
        pred = call(net, fast, frozen, buffers, support["user"], support["item"])
        return inner.loss(pred, support["rating"], support["mask"])

    fast = weights.fast
    for _ in range(inner.steps):
        grads = grad(support_loss)(fast)
        if inner.first_order:
            grads = {name: g.detach() for name, g in grads.items()}
        if isinstance(lr, Mapping):  # Meta-SGD: a learned rate per weight
            fast = {name: weight - lr[name] * grads[name] for name, weight in fast.items()}
        else:  # one fused pass over each weight (embedding tables are large per-task copies)
            fast = {
                name: torch.add(weight, grads[name], alpha=-lr) for name, weight in fast.items()
            }
    return fast


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


class Local(NamedTuple):
    """A batch of tasks with its embedding tables cut to each task's rows, and its inputs."""

    fast: Params  # localized tables have a leading task dimension; other weights are shared
    buffers: Params  # per-task feature tables of the rows each task reads; others shared
    tables: dict[str, LocalRows]  # by weight name
    per_task: frozenset[str]  # the buffers that are per task
    user: torch.Tensor  # the inputs to call the network with: positions in the per-task
    item: torch.Tensor  # tables where those were cut, the ids given otherwise

    @staticmethod
    def dims(params: Params, batched) -> dict[str, int | None]:
        """``vmap`` in_dims of ``params``: 0 for the per-task entries named in ``batched``."""
        return {name: 0 if name in batched else None for name in params}

    @property
    def buffer_dims(self) -> dict[str, int | None]:
        return self.dims(self.buffers, self.per_task)


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


def localize(net: nn.Module, fast: Params, buffers: Params, user, item) -> Local:
    """Cut every embedding table in ``fast`` to the rows each task's ``user`` (T,) and
    ``item`` (T, S) look up.

    A network says which input each of its feature embeddings reads with ``FEATURE_INPUTS``
    (prefix -> ``"user"`` or ``"item"``); one that does not keeps its tables whole. The
    feature tables of such an embedding (``row_buffers``) are cut to each task's own rows, so
    that a task maps the rows it reads, not the whole catalogue, to its local embedding rows;
    it is then called with positions in those rows instead of ids. The values of a feature
    whose table is cut become its ``mix_`` buffer (:func:`mixing`), in place of its
    ``table_`` and ``weight_`` buffers. An embedding that reads ids itself (a trainable text
    tower) keeps whole per-task tables.
    """
    fast, buffers = dict(fast), dict(buffers)
    inputs, tables, per_task = {"user": user, "item": item}, {}, set()
    for prefix, name in getattr(net, "FEATURE_INPUTS", {}).items():
        module = net.get_submodule(prefix)
        keys = {feature: f"{prefix}.embeddings.{feature}.weight" for feature in module.names}
        if not any(key in fast for key in keys.values()) or not module.row_buffers:
            continue
        ids = inputs[name]
        rows = ids.reshape(len(ids), -1)  # (T, N): every id a task reads
        for buffer in module.row_buffers:
            per_task.add(f"{prefix}.{buffer}")
            buffers[f"{prefix}.{buffer}"] = buffers[f"{prefix}.{buffer}"][rows]  # (T, N, ...)
        positions = torch.arange(rows.shape[1], device=ids.device)
        inputs[name] = positions.view(ids.shape[1:]).expand_as(ids)
        for feature, key in keys.items():
            if key not in fast:
                continue
            values = buffers.pop(f"{prefix}.table_{feature}")  # (T, N, width) of task rows
            local = local_rows(values.flatten(1))
            tables[key] = local
            fast[key] = fast[key][local.rows]
            index = local.find(values.flatten(1))[0].view(values.shape)
            weight = buffers.pop(f"{prefix}.weight_{feature}", None)
            buffers[f"{prefix}.mix_{feature}"] = mixing(index, weight, fast[key])
            per_task.add(f"{prefix}.mix_{feature}")
    per_task &= set(buffers)
    return Local(fast, buffers, tables, frozenset(per_task), inputs["user"], inputs["item"])


class Adapted(NamedTuple):
    """Per-task adapted weights (tables cut to the support set's rows) and those rows."""

    fast: Params
    tables: dict[str, LocalRows]


def adapt_tasks(
    net: nn.Module, weights: Weights, support: Mapping[str, torch.Tensor], inner: InnerLoop
) -> Adapted:
    """:func:`inner_loop` on every task of ``support`` at once (vmapped), each task's
    embedding tables cut to the rows its support set uses."""
    local = localize(net, weights.fast, weights.buffers, support["user"], support["item"])
    support = {**support, "user": local.user, "item": local.item}
    tables = set(local.tables)
    lr = inner.lr
    if isinstance(lr, Mapping):  # Meta-SGD: the rates of the local rows
        lr = {k: rate[local.tables[k].rows] if k in tables else rate for k, rate in lr.items()}
        lr_dims = local.dims(lr, tables)
    else:
        lr_dims = None

    def one_task(fast: Params, task_buffers: Params, task: Mapping, rates) -> Params:
        task_weights = Weights(fast, weights.frozen, task_buffers)
        return inner_loop(net, task_weights, task, inner._replace(lr=rates))

    in_dims = (local.dims(local.fast, tables), local.buffer_dims, 0, lr_dims)
    adapted = vmap(one_task, in_dims=in_dims)(local.fast, local.buffers, support, lr)
    return Adapted(adapted, local.tables)


def predict_tasks(
    net: nn.Module, state: Adapted, weights: Weights, query: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """(T, Q) predictions of each task's query items with its adapted weights: a table row
    the support set touched is the task's adapted row, any other the initial one (in
    ``weights.fast``, the weights the tasks adapted from)."""
    _, frozen, buffers = weights
    local = localize(net, weights.fast, buffers, query["user"], query["item"])
    weights = dict(state.fast)
    for key, rows in local.tables.items():
        support_rows = state.tables[key]
        position, touched = support_rows.find(rows.rows)  # (T, R)
        dim = state.fast[key].shape[-1]
        tuned = state.fast[key].gather(1, position.unsqueeze(-1).expand(-1, -1, dim))
        weights[key] = torch.where(touched.unsqueeze(-1), tuned, local.fast[key])

    def one_task(task_weights: Params, task_buffers: Params, user, item) -> torch.Tensor:
        return call(net, task_weights, frozen, task_buffers, user, item)

    return vmap(one_task, in_dims=(0, local.buffer_dims, 0, 0))(
        weights, local.buffers, local.user, local.item
    )
