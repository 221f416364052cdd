"""The inner loop of gradient-based learners on any unmodified nn.Module, via torch.func.

Fast weights are a dict of named tensors; ``functional_call`` runs the network with them and
``grad`` differentiates the support loss (:func:`inner_loop`, one task). :meth:`InnerLoop.adapt`
adapts a meta-batch at once: the network runs under ``vmap`` on weights with a leading task
dimension, and plain autograd takes every task's gradients in one backward of the summed
support losses (tasks share no fast weight, so each gets exactly its own gradient). The same
steps as ``vmap`` of :func:`inner_loop`, without ``grad``'s per-operation wrapping, which costs
more than the arithmetic on small tasks (``benchmarks/meta_training.py``).

Embedding tables are most of a recommender's weights (MeLU's network on ML-1M: 96%), yet a task
looks up a few hundred of their rows. :meth:`InnerLoop.adapt` gives each task only the rows it
uses (:func:`localize`); plain SGD leaves every other row where it was, so this is the same
adaptation as with whole per-task copies of the tables, at a small fraction of the memory
traffic. The feature tables that map a user or item to its embedding rows are cut the same
way, to the users and items each task reads (``FeatureEmbedding.task_rows``).
:meth:`Adapted.predict` reads adapted rows where the support set touched them and the initial
rows elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from metarec.encoders.features import LocalRows
from metarec.learners.losses import Loss, masked_mse

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


class InnerLoop(NamedTuple):
    """How each task adapts: ``steps`` gradient steps of the support ``loss``
    (``task_loss(task.target)``) at ``lr``, one learning rate or one tensor per fast weight
    (Meta-SGD). With ``first_order`` the inner gradients are constants to the meta-gradient."""

    steps: int
    lr: float | Params
    first_order: bool = False
    loss: Loss = masked_mse

    def adapt(
        self, net: nn.Module, support: Mapping[str, torch.Tensor], weights: Weights | None = None
    ) -> Adapted:
        """The steps of :func:`inner_loop` on every task of ``support`` at once
        (:meth:`batched_steps`), each task's embedding tables cut to the rows its support set
        uses. ``weights``: ``net``'s weights, those that adapt fast (default: every trainable
        weight, :func:`split_params`)."""
        weights = split_params(net) if weights is None else weights
        if embeds_once(net, weights.fast):
            return self._adapt_embedded(net, support, weights)
        local = localize(net, weights.fast, weights.buffers, support["user"], support["item"])
        tables, n_tasks = set(local.tables), len(support["user"])
        lr = self.lr
        if isinstance(lr, Mapping):  # Meta-SGD: the rates of the local rows
            lr = {k: rate[local.tables[k].rows] if k in tables else rate for k, rate in lr.items()}
        # Every task its own copy of each shared fast weight (a view until the first step).
        fast = {k: v if k in tables else v.expand(n_tasks, *v.shape) for k, v in local.fast.items()}

        def one_task(task_fast: Params, task_buffers: Params, user, item) -> torch.Tensor:
            return call(net, task_fast, weights.frozen, task_buffers, user, item)

        forward = vmap(one_task, in_dims=(0, local.buffer_dims, 0, 0))

        def support_loss(task_fast: Params) -> torch.Tensor:
            pred = forward(task_fast, local.buffers, local.user, local.item)
            return self.loss(pred, support["rating"], support["mask"]).sum()

        adapted = self._replace(lr=lr).batched_steps(support_loss, fast)
        return Adapted(adapted, local.tables, net, weights)

    def _adapt_embedded(
        self, net: nn.Module, support: Mapping[str, torch.Tensor], weights: Weights
    ) -> Adapted:
        """:meth:`adapt` where no embedding adapts: the support set's feature embeddings are
        computed once, outside the steps, and every step runs the decision layers on them."""
        user, item = embed(net, weights, support["user"], support["item"])
        n_tasks = len(support["user"])
        fast = {k: v.expand(n_tasks, *v.shape) for k, v in weights.fast.items()}

        def one_task(task_fast: Params, user, item) -> torch.Tensor:
            return call_embedded(net, task_fast, weights.frozen, weights.buffers, user, item)

        forward = vmap(one_task)

        def support_loss(task_fast: Params) -> torch.Tensor:
            pred = forward(task_fast, user, item)
            return self.loss(pred, support["rating"], support["mask"]).sum()

        return Adapted(self.batched_steps(support_loss, fast), {}, net, weights, embedded=True)

    def batched_steps(self, support_loss: Callable[[Params], torch.Tensor], fast: Params) -> Params:
        """``steps`` gradient steps of per-task weights ``fast`` (leading task dimension) on
        ``support_loss(fast)``, the sum of the tasks' support losses. The result has a graph
        to the weights that have one (``requires_grad``), second order unless
        ``first_order``; like ``torch.func.grad``, it adapts under ``torch.no_grad`` too."""
        tracked = {k for k, v in fast.items() if v.requires_grad and torch.is_grad_enabled()}
        create_graph = bool(tracked) and not self.first_order
        with torch.enable_grad():
            for _ in range(self.steps if fast else 0):
                fast = {
                    k: v if k in tracked else v.detach().requires_grad_() for k, v in fast.items()
                }
                loss = support_loss(fast)
                grads = torch.autograd.grad(
                    loss, list(fast.values()), create_graph=create_graph, materialize_grads=True
                )
                fast = sgd_step(fast, dict(zip(fast, grads, strict=True)), self.lr)
        return {k: v if k in tracked else v.detach() for k, v in fast.items()}


def sgd_step(fast: Params, grads: Params, lr: float | Params) -> Params:
    """One plain gradient step of every weight of ``fast``: one rate, or one per weight."""
    if isinstance(lr, Mapping):  # Meta-SGD: a learned rate per weight
        return {name: weight - lr[name] * grads[name] for name, weight in fast.items()}
    # one fused pass over each weight (embedding tables are large per-task copies)
    return {name: torch.add(weight, grads[name], alpha=-lr) for name, weight in fast.items()}


def call(net: nn.Module, fast: Params, frozen: Params, buffers: Params, *args) -> torch.Tensor:
    """``net(*args)`` with its parameters replaced by ``fast`` and ``frozen``."""
    return functional_call(net, ({**frozen, **fast}, buffers), args)


def call_embedded(net: nn.Module, fast: Params, frozen: Params, buffers: Params, user, item):
    """:func:`call` on feature embeddings ``user`` and ``item`` (``embedded=True``)."""
    return functional_call(net, ({**frozen, **fast}, buffers), (user, item), {"embedded": True})


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
        fast = sgd_step(fast, grads, lr)
    return fast


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


def _below(params: Params, prefix: str) -> Params:
    """The entries of ``params`` under submodule ``prefix``, named as in that submodule."""
    own = prefix + "."
    return {name.removeprefix(own): value for name, value in params.items() if name.startswith(own)}


def localize(net: nn.Module, fast: Params, buffers: Params, user, item) -> Local:
    """Cut every embedding table in ``fast`` to the rows each task's ``user`` (T,) and
    ``item`` (T, S) look up.

    A network says which input each of its feature embeddings reads with ``FEATURE_INPUTS``
    (prefix -> ``"user"`` or ``"item"``); one that does not keeps its tables whole. Such an
    embedding cuts its own weights and buffers to each task's rows (``task_rows``), so that
    a task maps the rows it reads, not the whole catalogue, to its local embedding rows; it
    is then called with positions in those rows instead of ids. An embedding that reads ids
    itself (a trainable text tower) keeps whole per-task tables.
    """
    fast, buffers = dict(fast), dict(buffers)
    inputs, tables, per_task = {"user": user, "item": item}, {}, set()
    for prefix, name in getattr(net, "FEATURE_INPUTS", {}).items():
        ids = inputs[name]
        rows = ids.reshape(len(ids), -1)  # (T, N): every id a task reads
        module = net.get_submodule(prefix)
        cut = module.task_rows(_below(fast, prefix), _below(buffers, prefix), rows)
        if cut is None:
            continue
        positions = torch.arange(rows.shape[1], device=ids.device)
        inputs[name] = positions.view(ids.shape[1:]).expand_as(ids)
        buffers = {key: value for key, value in buffers.items() if not key.startswith(prefix + ".")}
        buffers.update({f"{prefix}.{key}": value for key, value in cut.buffers.items()})
        fast.update({f"{prefix}.{key}": value for key, value in cut.tables.items()})
        tables.update({f"{prefix}.{key}": rows for key, rows in cut.local.items()})
        per_task.update(f"{prefix}.{key}" for key in cut.per_task)
    return Local(fast, buffers, tables, frozenset(per_task), inputs["user"], inputs["item"])


def embeds_once(net: nn.Module, fast: Params) -> bool:
    """Whether ``net`` takes its feature embeddings as inputs (``forward(..., embedded=True)``,
    with ``FEATURE_INPUTS``) and none of them adapts: then they are the same at every inner
    step, and computed once."""
    prefixes = tuple(f"{prefix}." for prefix in getattr(net, "FEATURE_INPUTS", {}))
    return bool(prefixes) and not any(name.startswith(prefixes) for name in fast)


def embed(net: nn.Module, weights: Weights, user: torch.Tensor, item: torch.Tensor):
    """The feature embeddings of ``user`` and ``item`` (by ``FEATURE_INPUTS``) with the
    frozen weights (detached where those are)."""
    inputs = {"user": user, "item": item}
    out = {}
    for prefix, name in net.FEATURE_INPUTS.items():
        params = (_below(weights.frozen, prefix), _below(weights.buffers, prefix))
        out[name] = functional_call(net.get_submodule(prefix), params, (inputs[name],))
    return out["user"], out["item"]


class Adapted(NamedTuple):
    """Per-task adapted weights (tables cut to the support set's rows) and those rows, with
    the network and the weights they adapted from: what :meth:`predict` needs. ``embedded``:
    the network ran on feature embeddings computed once (:func:`embeds_once`)."""

    fast: Params
    tables: dict[str, LocalRows]
    net: nn.Module
    start: Weights
    embedded: bool = False

    def predict(self, query: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(T, Q) predictions of each task's query items with its adapted weights: a table
        row the support set touched is the task's adapted row, any other the initial one (in
        ``start.fast``)."""
        net, (_, frozen, buffers) = self.net, self.start
        if self.embedded:
            user, item = embed(net, self.start, query["user"], query["item"])

            def one_task(task_fast: Params, user, item) -> torch.Tensor:
                return call_embedded(net, task_fast, frozen, buffers, user, item)

            return vmap(one_task)(self.fast, user, item)
        local = localize(net, self.start.fast, buffers, query["user"], query["item"])
        weights = dict(self.fast)
        for key, rows in local.tables.items():
            support_rows = self.tables[key]
            position, touched = support_rows.find(rows.rows)  # (T, R)
            dim = self.fast[key].shape[-1]
            tuned = self.fast[key].gather(1, position.unsqueeze(-1).expand(-1, -1, dim))
            weights[key] = torch.where(touched.unsqueeze(-1), tuned, local.fast[key])

        def one_task(task_weights: Params, task_buffers: Params, user, item) -> torch.Tensor:
            return call(net, task_weights, frozen, task_buffers, user, item)

        return vmap(one_task, in_dims=(0, local.buffer_dims, 0, 0))(
            weights, local.buffers, local.user, local.item
        )
