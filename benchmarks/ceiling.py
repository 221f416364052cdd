"""What eager PyTorch reaches on this workload's own shapes: MeLU's decision layers adapted per
task as a bare chain of batched matmuls, beside metarec's learner doing the same math.

    python benchmarks/ceiling.py                       # MeLU's MovieLens-1M tasks
    python benchmarks/ceiling.py --synthetic --steps 4
    python benchmarks/ceiling.py --repeat 5 --out results/bench/x.json

MeLU's own update adapts the decision layers only (``learner.adapt=decision``): each task's
feature embeddings are the same at every inner step. ``bare`` computes them once per meta-batch
(as metarec's embed-once path does) and then runs only what the math needs, on the learner's
own length groups and padding: per-task weights (the first layer's user and item halves kept
apart from the start), ``baddbmm`` / ``bmm`` and ReLU, the masked squared error, one
``torch.autograd.grad`` per inner step and the query loss's backward; no ``vmap``, no
``functional_call``, no module. ``metarec`` is the library's MAML with the same settings
(``learner.training_loss``, then backward). Both must give the same meta-gradient; then both
are timed, sides alternating, and their achieved GFLOP/s and share of the same run's sgemm rate
printed (``efficiency.py``), per thread count. Serving (first-order steps on new users, then
their query items scored, ``--batch-size`` at once) likewise.

``bare`` does no more than the math and only matrix products between a few elementwise ops, so
its share of sgemm is what eager execution reaches on these shapes: a bound for metarec on the
same math, and for ``adapt=all`` (``meta_training.py``), which adds per-task embedding tables
to it. Neither side takes an optimizer step.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import partial

import efficiency
import torch
from meta_training import bench_config, make_learner, meta_batches
from serving import serve_batched

from metarec.build import prepare_tasks
from metarec.data.batch import Batch, length_groups, take_tasks
from metarec.learners.base import MetaLearner
from metarec.learners.losses import masked_mse

Weights = dict[str, torch.Tensor]
Group = tuple[torch.Tensor, ...]  # user (T, 1, U), support items (T, S, I), ratings, mask,
#                                   query items (T, Q, I), query ratings, query mask


def decision_weights(learner: MetaLearner) -> Weights:
    """The network's decision layers as the bare chain takes them, the first layer's weight
    split once into its user and item halves (views of the parameters: the meta-gradient
    flows back to them)."""
    net = learner.net
    first, hidden, out = (layer for layer in net.decision if isinstance(layer, torch.nn.Linear))
    user_w, item_w = first.weight.split([net.user_features.out_dim, net.item_features.out_dim], 1)
    return {"user_w": user_w, "item_w": item_w, "b0": first.bias, "w1": hidden.weight,
            "b1": hidden.bias, "w2": out.weight, "b2": out.bias}  # fmt: skip


def embedded_groups(learner: MetaLearner, batch: Batch) -> list[tuple[torch.Tensor, Group]]:
    """The batch in the learner's own length groups (each group's task indices beside it),
    each task's feature embeddings computed once: the same at every inner step, as only the
    decision layers adapt (the meta-gradient reaches the embedding tables through them)."""
    net, groups = learner.net, length_groups(batch["support_mask"].sum(1), learner.group_overhead)
    out = []
    for index in groups:
        part = take_tasks(batch, index)
        user = net.user_features(part["user"]).unsqueeze(1)
        support = net.item_features(part["support_item"])
        query = net.item_features(part["query_item"])
        out.append((index, (user, support, part["support_rating"], part["support_mask"], query,
                            part["query_rating"], part["query_mask"])))  # fmt: skip
    return out


def bare_forward(w: Weights, user: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(T, N) ratings of ``items`` (T, N, I) for ``user`` (T, 1, U) with per-task weights ``w``."""
    first = torch.baddbmm(w["b0"].unsqueeze(1), user, w["user_w"].mT)  # (T, 1, H) once per task
    hidden = torch.baddbmm(first, items, w["item_w"].mT).relu()
    hidden = torch.baddbmm(w["b1"].unsqueeze(1), hidden, w["w1"].mT).relu()
    return torch.baddbmm(w["b2"].unsqueeze(1), hidden, w["w2"].mT).squeeze(-1)


def bare_adapt(w: Weights, group: Group, steps: int, lr: float, second_order: bool) -> Weights:
    """``steps`` plain gradient steps of every task's copy of ``w`` on its support loss."""
    user, items, rating, mask = group[:4]
    fast = {name: value.expand(len(user), *value.shape) for name, value in w.items()}
    for _ in range(steps):
        if not second_order:
            fast = {name: value.detach().requires_grad_() for name, value in fast.items()}
        loss = masked_mse(bare_forward(fast, user, items), rating, mask).sum()
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=second_order)
        fast = {name: value - lr * g for (name, value), g in zip(fast.items(), grads, strict=True)}
    return fast


def bare_loss(learner: MetaLearner, batch: Batch) -> torch.Tensor:
    """The mean query loss after second-order adaptation: metarec's ``training_loss``."""
    cfg, w = learner.cfg, decision_weights(learner)
    losses = []
    for _, group in embedded_groups(learner, batch):
        fast = bare_adapt(w, group, cfg.inner_steps, cfg.inner_lr, second_order=True)
        losses.append(masked_mse(bare_forward(fast, group[0], group[4]), group[5], group[6]))
    return torch.cat(losses).mean()


def bare_serve(learner: MetaLearner, batch: Batch) -> torch.Tensor:
    """(T, Q) query predictions after first-order adaptation (no meta-gradient)."""
    cfg = learner.cfg
    with torch.no_grad():
        groups = embedded_groups(learner, batch)
    w = {name: value.detach() for name, value in decision_weights(learner).items()}
    preds = []
    for _, group in groups:
        with torch.enable_grad():
            fast = bare_adapt(w, group, cfg.inner_steps, cfg.inner_lr, second_order=False)
        with torch.no_grad():
            preds.append(bare_forward(fast, group[0], group[4]))
    order = torch.argsort(torch.cat([index for index, _ in groups]))
    return torch.cat(preds)[order]


def check_same_gradient(learner: MetaLearner, batch: Batch) -> float:
    """Largest difference between the two sides' meta-gradients w.r.t. every weight of the
    network (float64), asserted within rounding."""
    typed = copy.deepcopy(learner).double().train()
    cast = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    params = list(typed.net.parameters())
    ours = torch.autograd.grad(typed.training_loss(cast), params)
    bare = torch.autograd.grad(bare_loss(typed, cast), params)
    for a, b in zip(ours, bare, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    return max((a - b).abs().max().item() for a, b in zip(ours, bare, strict=True))


def check_same_predictions(learner: MetaLearner, batch: Batch) -> float:
    """Largest difference between the two sides' served predictions on real query items."""
    learner.eval()
    with torch.enable_grad():  # evaluation adapts with gradients, as Lightning's test step does
        ours = learner(batch).detach()
    mask = batch["query_mask"]
    diff = (ours - bare_serve(learner, batch))[mask].abs().max().item()
    if not diff <= 1e-4:
        raise AssertionError(f"served predictions differ by {diff}")
    return diff


def main(argv: Sequence[str] | None = None) -> dict:
    parser = efficiency.bench_parser(__doc__.split("\n\n")[0], "results/bench/ceiling.json")
    parser.add_argument("--steps", type=int, default=10, help="meta-steps timed per round")
    parser.add_argument("--batch-size", type=int, default=256, help="users served at once")
    args = parser.parse_args(argv)

    torch.set_num_threads(min(args.threads))
    cfg = bench_config(args.synthetic, args.root, ["learner.adapt=decision", *args.set])
    tasks = prepare_tasks(cfg)
    learner = make_learner(cfg, tasks)
    size = cfg.learner.meta_batch_size
    batches = meta_batches(tasks, size, args.steps, cfg.seed)
    users = tasks.test["new_user"]
    served = [users[torch.arange(i, min(i + args.batch_size, len(users)))]
              for i in range(0, len(users), args.batch_size)]  # fmt: skip
    diff = check_same_gradient(learner, batches[0])
    served_diff = check_same_predictions(learner, served[0])
    print(f"meta-gradients agree (float64): max abs diff {diff:.2e}; served predictions "
          f"(float32): {served_diff:.2e}")  # fmt: skip

    def metarec_train() -> None:
        for batch in batches:
            learner.training_loss(batch).backward()

    def bare_train() -> None:
        for batch in batches:  # the embeddings are part of the timed work, once per batch
            bare_loss(learner, batch).backward()

    def bare_serving() -> None:
        for batch in served:
            bare_serve(learner, batch)

    train_sides = {"metarec": metarec_train, "bare": bare_train}
    serve_sides = {"metarec": partial(serve_batched, learner, users, args.batch_size),
                   "bare": bare_serving}  # fmt: skip
    learner.train()
    train_flops = {side: efficiency.count_flops(run) for side, run in train_sides.items()}
    serve_flops = {side: efficiency.count_flops(run) for side, run in serve_sides.items()}
    learner.zero_grad(set_to_none=True)

    def measure() -> dict:
        sgemm = efficiency.sgemm_gflops()
        learner.train()
        train = efficiency.time_rounds(train_sides, args.repeat)
        serve = efficiency.time_rounds(serve_sides, args.repeat)
        learner.zero_grad(set_to_none=True)
        report = {}
        for work, seconds, flops, unit, count in (
            ("meta_training", train, train_flops, "tasks", args.steps * size),
            ("serving", serve, serve_flops, "users", len(users)),
        ):
            report[work] = {}
            for side, times in seconds.items():
                rate = efficiency.achieved(flops[side], min(times), sgemm)
                per_second = count / min(times)
                print(f"{work:>13} {side:>8}: {per_second:8.1f} {unit}/s, "
                      f"{efficiency.describe(rate)}")  # fmt: skip
                report[work][side] = {f"{unit}_per_second": per_second, "efficiency": rate}
        return report

    timed = efficiency.by_threads(args.threads, measure)
    result = {
        "benchmark": "ceiling",
        "dataset": cfg.data.name,
        "adapt": cfg.learner.adapt,
        "meta_batch_size": size,
        "inner_steps": cfg.learner.inner_steps,
        "steps_per_round": args.steps,
        "serving_batch_size": args.batch_size,
        "repeat": args.repeat,
        "max_abs_diff_float64": diff,
        "max_prediction_diff": served_diff,
        "gflop_per_step": {side: f / args.steps / 1e9 for side, f in train_flops.items()},
        "by_threads": timed,
    }
    return efficiency.write_report(args.out, result)


if __name__ == "__main__":
    main()
