"""Cold-start serving throughput: new users adapted (and their query items scored) per second.

    python benchmarks/serving.py                      # MeLU's MovieLens-1M new-user tasks
    python benchmarks/serving.py --synthetic
    python benchmarks/serving.py --batch-size 256 --repeat 5 --out results/bench/x.json

Each new user (a ``new_user`` test task) is adapted from the meta-learned weights with
``learner.inner_steps`` (5) gradient steps on its support ratings, with no graph to the weights
(evaluation is first order), then its query items are scored. ``metarec`` adapts
``--batch-size`` users at once through the learner itself (vmapped ``adapt`` + ``predict``);
``loop`` adapts one user at a time with ``torch.autograd.grad`` on that user's own ratings.
Both see the same network and users and must predict the same ratings; rounds alternate order
after a warm-up and the best of ``--repeat`` counts, once per ``--threads`` count (default 1
thread, then every core). Without ``--batch-size`` each thread count first serves every user
once per size of ``BATCH_SIZES`` and times ``metarec`` at the fastest. Prints users/s of each,
the speed-up, and metarec's achieved GFLOP/s and their share of a float32 matmul's at the same
threads (``efficiency.py``), and writes them as JSON to ``--out``. The weights are the initial
ones: adapting costs the same whatever their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import efficiency
import torch
from meta_training import bench_config, make_learner, split_tasks
from torch import nn
from torch.func import functional_call

from metarec.build import prepare_tasks
from metarec.data.batch import Batch
from metarec.data.tasks import TaskSet
from metarec.learners.base import MetaLearner
from metarec.learners.losses import Loss

# Users adapted at once that ``choose_batch_size`` tries when --batch-size is not given.
BATCH_SIZES = (64, 128, 256, 512)


def serve_batched(learner: MetaLearner, users: TaskSet, batch_size: int) -> torch.Tensor:
    """Query predictions (users, query) of metarec: ``batch_size`` users adapted at once."""
    learner.eval()
    preds = []
    with torch.enable_grad():  # evaluation adapts with gradients, as Lightning's test step does
        for start in range(0, len(users), batch_size):
            batch = users[torch.arange(start, min(start + batch_size, len(users)))]
            preds.append(learner(batch).detach())
    return torch.cat(preds)


def choose_batch_size(learner: MetaLearner, users: TaskSet) -> tuple[int, dict[int, float]]:
    """The size of ``BATCH_SIZES`` (at most every user) that serves ``users`` fastest on this
    machine at the current threads (one timed pass each, after a warm-up), and users/s of each:
    a larger batch pays the fixed cost of a pass less often, yet its tensors grow."""
    sizes = sorted({min(size, len(users)) for size in BATCH_SIZES})
    seconds = efficiency.time_rounds(
        {size: partial(serve_batched, learner, users, size) for size in sizes}, repeat=1
    )
    rates = {size: len(users) / times[0] for size, times in seconds.items()}
    return max(rates, key=rates.get), rates


def serve_loop(net: nn.Module, tasks: list[Batch], steps: int, lr: float, loss: Loss) -> list:
    """Query predictions per user, one user at a time: ``steps`` plain gradient steps of every
    parameter (``torch.autograd.grad``, no graph kept), then the user's query items scored."""
    params = {name: p.detach() for name, p in net.named_parameters()}
    buffers = dict(net.named_buffers())
    preds = []
    for task in tasks:
        fast = {name: p.requires_grad_() for name, p in params.items()}
        for _ in range(steps):
            pred = functional_call(net, (fast, buffers), (task["user"], task["support_item"]))
            mask = torch.ones_like(task["support_rating"], dtype=torch.bool)
            grads = torch.autograd.grad(
                loss(pred, task["support_rating"], mask), list(fast.values())
            )
            with torch.no_grad():
                fast = {name: w - lr * g for (name, w), g in zip(fast.items(), grads, strict=True)}
            fast = {name: w.requires_grad_() for name, w in fast.items()}
        with torch.no_grad():
            preds.append(functional_call(net, (fast, buffers), (task["user"], task["query_item"])))
    return preds


def max_prediction_diff(batched: torch.Tensor, looped: list, users: TaskSet) -> float:
    """Largest absolute difference of the two sides' predictions on real query items."""
    return max(
        (batched[t][users.query_mask[t]] - pred).abs().max().item() for t, pred in enumerate(looped)
    )


def main(argv: Sequence[str] | None = None) -> dict:
    parser = efficiency.bench_parser(__doc__.split("\n\n")[0], "results/bench/serving.json")
    parser.add_argument("--scenario", default="new_user", help="test scenario to serve")
    parser.add_argument("--users", type=int, default=None, help="serve only the first N users")
    sizes = ", ".join(map(str, BATCH_SIZES))
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"users adapted at once (default: the fastest of {sizes} "
                             "at each thread count)")  # fmt: skip
    args = parser.parse_args(argv)

    torch.set_num_threads(min(args.threads))
    cfg = bench_config(args.synthetic, args.root, args.set)
    if cfg.learner.adapt != "all":
        parser.error("the per-user loop adapts every parameter: keep learner.adapt=all")
    tasks = prepare_tasks(cfg)
    learner = make_learner(cfg, tasks).eval()
    users = tasks.test[args.scenario]
    if args.users is not None:
        users = users.subset(range(min(args.users, len(users))))
    check_size = args.batch_size or cfg.learner.eval_batch_size
    steps, lr = cfg.learner.inner_steps, cfg.learner.inner_lr
    per_user = split_tasks(users[torch.arange(len(users))])
    print(f"{cfg.data.name}/{args.scenario}: {len(users)} users; inner steps {steps}, "
          f"inner lr {lr}, adapt {cfg.learner.adapt}")  # fmt: skip

    batched = serve_batched(learner, users, check_size)
    looped = serve_loop(learner.net, per_user, steps, lr, learner.loss)
    diff = max_prediction_diff(batched, looped, users)
    print(f"predictions agree: max abs diff {diff:.2e}")
    if not diff <= 1e-3:
        raise AssertionError(f"batched and per-user predictions differ by {diff}")

    def serve_loop_side() -> list:
        return serve_loop(learner.net, per_user, steps, lr, learner.loss)

    def measure() -> dict:
        sgemm = efficiency.sgemm_gflops()
        size, by_size = args.batch_size, {}
        if size is None:
            size, by_size = choose_batch_size(learner, users)
            tried = ", ".join(f"{batch}: {rate:.0f}" for batch, rate in by_size.items())
            print(f"users/s by batch size: {tried}; serving {size} at once")
        sides = {"metarec": partial(serve_batched, learner, users, size), "loop": serve_loop_side}
        flops = efficiency.count_flops(sides["metarec"])  # one pass over every user
        seconds = efficiency.time_rounds(sides, args.repeat)
        rates = {side: len(users) / min(times) for side, times in seconds.items()}
        ratio = rates["metarec"] / rates["loop"]
        achieved = efficiency.achieved(flops, min(seconds["metarec"]), sgemm)
        for side, rate in rates.items():
            print(f"{side:>8}: {rate:8.1f} users/s  (best of {args.repeat})")
        print(f"metarec/loop: {ratio:6.2f}x")
        mflop = flops / len(users) / 1e6
        print(f"metarec: {mflop:.1f} MFLOP per user, {efficiency.describe(achieved)}")
        return {
            "users_per_second": rates,
            "ratio": {"metarec/loop": ratio},
            "batch_size": size,
            "users_per_second_by_batch_size": {str(batch): rate for batch, rate in by_size.items()},
            "mflop_per_user": mflop,
            "efficiency": achieved,
            "seconds_per_round": seconds,
        }

    timed = efficiency.by_threads(args.threads, measure)

    result = {
        "benchmark": "serving",
        "dataset": cfg.data.name,
        "scenario": args.scenario,
        "users": len(users),
        "batch_size": args.batch_size or "chosen per thread count",
        "inner_steps": steps,
        "inner_lr": lr,
        "adapt": cfg.learner.adapt,
        "repeat": args.repeat,
        "max_prediction_diff": diff,
        "by_threads": timed,
    }
    return efficiency.write_report(args.out, result)


if __name__ == "__main__":
    main()
