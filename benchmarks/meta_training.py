"""Meta-training throughput of metarec's MAML against a per-task loop and learn2learn.

    python benchmarks/meta_training.py                      # MeLU's MovieLens-1M tasks
    python benchmarks/meta_training.py --synthetic --steps 10
    python benchmarks/meta_training.py --root PATH --repeat 5 --out results/bench/x.json

All three sides run second-order MAML on the same MeLU network, the same meta-batches, inner
steps and inner learning rate, adapting every parameter (``learner.adapt=all``):

- ``metarec``: the library's MAML, every task of a meta-batch adapted at once under ``vmap``;
- ``loop``: one task at a time, ``torch.autograd.grad(create_graph=True)`` on its own ratings;
- ``learn2learn``: ``l2l.algorithms.MAML``, ``clone()`` and ``adapt()`` per task.

First the three meta-gradients (of the mean query loss w.r.t. the initial weights) must agree,
in float64 and float32. Then each side runs ``--steps`` meta-steps (loss, backward, Adam step)
per round, sides alternating order, after a warm-up; the best of ``--repeat`` rounds counts.
All of it is timed once per ``--threads`` count (default 1 thread, then every core), the
sides always with the same threads. Prints tasks/s per side, metarec's speed-ups, and its
achieved GFLOP/s and their share of a float32 matmul's at the same threads (``efficiency.py``),
and writes them as JSON to ``--out``.
learn2learn is optional (``make learn2learn`` builds it); without it that side is skipped.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import efficiency
import torch
from torch import nn
from torch.func import functional_call

from metarec.build import build_learner, prepare_tasks
from metarec.config.load import load_config
from metarec.config.schema import RunConfig
from metarec.data.batch import Batch
from metarec.data.scenarios import ColdStartTasks
from metarec.learners.base import MetaLearner
from metarec.learners.losses import Loss

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "melu_ml1m" / "maml.yaml"
# float32 tolerance of the gradient check (sums over tasks run in different orders).
RTOL32, ATOL32 = 1e-4, 1e-6
RTOL64, ATOL64 = 1e-9, 1e-12


# MeLU-5's inner loop (5 local updates), whatever the experiment file's tuned defaults.
FIXED = ["learner.adapt=all", "learner.inner_steps=5"]


def bench_config(synthetic: bool, root: str, overrides: Sequence[str] = ()) -> RunConfig:
    """MeLU-ML1M's MAML experiment (or the synthetic defaults), every parameter adapted, 5
    inner steps; ``overrides`` (``--set``) come last."""
    if synthetic:
        return load_config(None, [*FIXED, *overrides])
    return load_config(EXPERIMENT, [f"data.root={root}", *FIXED, *overrides])


def make_learner(cfg: RunConfig, tasks: ColdStartTasks) -> MetaLearner:
    """The configured learner, its network initialised from ``cfg.seed`` as a run does."""
    torch.manual_seed(cfg.seed)
    return build_learner(cfg, tasks).train()


def meta_batches(tasks: ColdStartTasks, size: int, count: int, seed: int) -> list[Batch]:
    """``count`` meta-batches of ``size`` training tasks, drawn without replacement (cycling)."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(count * size / len(tasks.train))
    order = torch.cat(
        [torch.randperm(len(tasks.train), generator=generator) for _ in range(epochs)]
    )
    return [tasks.train[order[i * size : (i + 1) * size]] for i in range(count)]


def split_tasks(batch: Batch) -> list[Batch]:
    """A padded meta-batch as a list of tasks, each with only its own ratings (no padding),
    as a per-task implementation holds them. Done before timing, so it is not timed."""
    tasks = []
    for t in range(len(batch["user"])):
        support, query = batch["support_mask"][t], batch["query_mask"][t]
        tasks.append({
            "user": batch["user"][t],
            "support_item": batch["support_item"][t][support],
            "support_rating": batch["support_rating"][t][support],
            "query_item": batch["query_item"][t][query],
            "query_rating": batch["query_rating"][t][query],
        })  # fmt: skip
    return tasks


def _all(ratings: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(ratings, dtype=torch.bool)


# -- the meta-training loss three ways: mean query loss after adapting on each support set -----
def metarec_loss(learner: MetaLearner, batch: Batch) -> torch.Tensor:
    """metarec's MAML: the whole meta-batch adapted at once (vmap + torch.func.grad)."""
    return learner.training_loss(batch)


def loop_loss(
    net: nn.Module, tasks: list[Batch], steps: int, lr: float, loss: Loss
) -> torch.Tensor:
    """One task at a time: ``steps`` gradient steps of every parameter with
    ``torch.autograd.grad(create_graph=True)``, then the query loss; mean over tasks."""
    params = dict(net.named_parameters())
    buffers = dict(net.named_buffers())
    losses = []
    for task in tasks:
        fast = params
        for _ in range(steps):
            pred = functional_call(net, (fast, buffers), (task["user"], task["support_item"]))
            support_loss = loss(pred, task["support_rating"], _all(task["support_rating"]))
            grads = torch.autograd.grad(support_loss, list(fast.values()), create_graph=True)
            fast = {name: w - lr * g for (name, w), g in zip(fast.items(), grads, strict=True)}
        pred = functional_call(net, (fast, buffers), (task["user"], task["query_item"]))
        losses.append(loss(pred, task["query_rating"], _all(task["query_rating"])))
    return torch.stack(losses).mean()


def learn2learn_loss(maml: nn.Module, tasks: list[Batch], steps: int, loss: Loss) -> torch.Tensor:
    """learn2learn's MAML (``l2l.algorithms.MAML`` around the net): ``clone()`` per task,
    ``adapt()`` ``steps`` times on the support loss, then the query loss; mean over tasks."""
    losses = []
    for task in tasks:
        learner = maml.clone()
        for _ in range(steps):
            pred = learner(task["user"], task["support_item"])
            learner.adapt(loss(pred, task["support_rating"], _all(task["support_rating"])))
        pred = learner(task["user"], task["query_item"])
        losses.append(loss(pred, task["query_rating"], _all(task["query_rating"])))
    return torch.stack(losses).mean()


def wrap_learn2learn(net: nn.Module, lr: float) -> nn.Module:
    """``l2l.algorithms.MAML`` around ``net``: second order, the same inner learning rate."""
    import learn2learn as l2l

    return l2l.algorithms.MAML(net, lr=lr, first_order=False)


def meta_gradients(
    learner: MetaLearner, batch: Batch, with_learn2learn: bool = True
) -> dict[str, list[torch.Tensor]]:
    """The meta-gradient w.r.t. ``learner.net``'s initial weights, per side, in its order."""
    cfg, net = learner.cfg, learner.net
    learner.train()
    params = list(net.parameters())
    tasks = split_tasks(batch)
    losses = {
        "metarec": metarec_loss(learner, batch),
        "loop": loop_loss(net, tasks, cfg.inner_steps, cfg.inner_lr, learner.loss),
    }
    if with_learn2learn:
        maml = wrap_learn2learn(net, cfg.inner_lr)
        losses["learn2learn"] = learn2learn_loss(maml, tasks, cfg.inner_steps, learner.loss)
    return {side: list(torch.autograd.grad(loss, params)) for side, loss in losses.items()}


def max_abs_diff(grads: dict[str, list[torch.Tensor]], reference: str = "metarec") -> dict:
    """Largest absolute difference of each side's meta-gradient from ``reference``'s."""
    return {
        side: max((a - b).abs().max().item() for a, b in zip(g, grads[reference], strict=True))
        for side, g in grads.items()
        if side != reference
    }


def assert_close(grads: dict[str, list[torch.Tensor]], rtol: float, atol: float) -> None:
    """Every side's meta-gradient equals metarec's, parameter by parameter."""
    for side, g in grads.items():
        for index, (a, b) in enumerate(zip(g, grads["metarec"], strict=True)):
            where = f"{side} vs metarec, parameter {index}"
            torch.testing.assert_close(
                a, b, rtol=rtol, atol=atol, msg=lambda m, w=where: f"{w}: {m}"
            )


def check_gradients(learner: MetaLearner, batch: Batch, with_learn2learn: bool) -> dict:
    """The three meta-gradients on ``batch``, in float64 and float32: max abs diffs, asserted."""
    report = {}
    for dtype, rtol, atol in ((torch.float64, RTOL64, ATOL64), (torch.float32, RTOL32, ATOL32)):
        typed = copy.deepcopy(learner).to(dtype)
        cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch.items()}
        grads = meta_gradients(typed, cast, with_learn2learn)
        report[str(dtype).removeprefix("torch.")] = {
            "max_abs_diff": max_abs_diff(grads),
            "max_abs_grad": max(g.abs().max().item() for g in grads["metarec"]),
            "rtol": rtol,
            "atol": atol,
        }
        assert_close(grads, rtol, atol)
    return report


# -- timing ---------------------------------------------------------------------------------
def build_sides(learner: MetaLearner, batches: list[Batch], with_learn2learn: bool) -> dict:
    """One meta-step runner per side, each on its own copy of the same initial network."""
    cfg = learner.cfg
    steps, lr, loss, outer_lr = cfg.inner_steps, cfg.inner_lr, learner.loss, cfg.outer_lr
    per_task = [split_tasks(batch) for batch in batches]
    ours = copy.deepcopy(learner).train()
    loop_net = copy.deepcopy(learner.net)
    runner = efficiency.meta_step_runner
    sides = {
        "metarec": runner(lambda b: metarec_loss(ours, b), ours, batches, outer_lr),
        "loop": runner(
            lambda t: loop_loss(loop_net, t, steps, lr, loss), loop_net, per_task, outer_lr
        ),
    }
    if with_learn2learn:
        maml = wrap_learn2learn(copy.deepcopy(learner.net), lr)
        sides["learn2learn"] = runner(
            lambda t: learn2learn_loss(maml, t, steps, loss), maml, per_task, outer_lr
        )
    return sides


def has_learn2learn() -> bool:
    """Whether learn2learn is installed (``make learn2learn`` builds it)."""
    return importlib.util.find_spec("learn2learn") is not None


def main(argv: Sequence[str] | None = None) -> dict:
    parser = efficiency.bench_parser(__doc__.split("\n\n")[0], "results/bench/meta_training.json")
    parser.add_argument("--steps", type=int, default=10, help="meta-steps timed per round")
    parser.add_argument("--no-learn2learn", action="store_true", help="skip learn2learn")
    args = parser.parse_args(argv)

    torch.set_num_threads(min(args.threads))
    with_l2l = not args.no_learn2learn and has_learn2learn()
    if not with_l2l and not args.no_learn2learn:
        print("learn2learn is not installed (make learn2learn); timing metarec and loop only")
    cfg = bench_config(args.synthetic, args.root, args.set)
    if cfg.learner.adapt != "all" or cfg.learner.first_order:
        parser.error("the loop and learn2learn run second-order MAML on every parameter: "
                     "keep learner.adapt=all and learner.first_order=false")  # fmt: skip
    tasks = prepare_tasks(cfg)
    learner = make_learner(cfg, tasks)
    size = cfg.learner.meta_batch_size
    batches = meta_batches(tasks, size, args.steps, cfg.seed)
    print(f"{cfg.data.name}: {len(tasks.train)} training tasks; meta-batch {size}, "
          f"inner steps {cfg.learner.inner_steps}, inner lr {cfg.learner.inner_lr}, "
          f"adapt {cfg.learner.adapt}, second order")  # fmt: skip

    check = check_gradients(learner, batches[0], with_l2l)
    for dtype, result in check.items():
        diffs = ", ".join(f"{side} {diff:.2e}" for side, diff in result["max_abs_diff"].items())
        print(f"meta-gradients agree ({dtype}): max abs diff from metarec: {diffs} "
              f"(largest gradient {result['max_abs_grad']:.2e})")  # fmt: skip

    # FLOPs of metarec's round (all its meta-steps), counted once: they do not depend on threads.
    flops = efficiency.count_flops(build_sides(learner, batches, with_learn2learn=False)["metarec"])
    print(f"metarec: {flops / args.steps / 1e9:.2f} GFLOP per meta-step (FlopCounterMode)")

    def measure() -> dict:
        sgemm = efficiency.sgemm_gflops()
        seconds = efficiency.time_rounds(build_sides(learner, batches, with_l2l), args.repeat)
        rates = {side: args.steps * size / min(times) for side, times in seconds.items()}
        ratios = {f"metarec/{side}": rates["metarec"] / rate for side, rate in rates.items()
                  if side != "metarec"}  # fmt: skip
        achieved = efficiency.achieved(flops, min(seconds["metarec"]), sgemm)
        for side, rate in rates.items():
            print(f"{side:>12}: {rate:8.1f} tasks/s  (best of {args.repeat} x {args.steps})")
        for name, ratio in ratios.items():
            print(f"{name:>20}: {ratio:6.2f}x")
        print(f"{'metarec':>12}: {efficiency.describe(achieved)}")
        return {"tasks_per_second": rates, "ratios": ratios, "efficiency": achieved,
                "seconds_per_round": seconds}  # fmt: skip

    timed = efficiency.by_threads(args.threads, measure)

    result = {
        "benchmark": "meta_training",
        "dataset": cfg.data.name,
        "training_tasks": len(tasks.train),
        "meta_batch_size": size,
        "inner_steps": cfg.learner.inner_steps,
        "inner_lr": cfg.learner.inner_lr,
        "adapt": cfg.learner.adapt,
        "second_order": True,
        "steps_per_round": args.steps,
        "repeat": args.repeat,
        "gradient_check": check,
        "gflop_per_step": flops / args.steps / 1e9,
        "by_threads": timed,
    }
    return efficiency.write_report(args.out, result)


if __name__ == "__main__":
    main()
