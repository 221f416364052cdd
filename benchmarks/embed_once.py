"""Learners that adapt no embedding: feature embeddings computed once per meta-batch, or at
every inner step.

    python benchmarks/embed_once.py              # MeLU (decision layers) and ANIL on ML-1M
    python benchmarks/embed_once.py --synthetic --repeat 1 --steps 2

Where no fast weight is an embedding (``learner.adapt=decision``: MeLU's local update;
``last``: ANIL), ``InnerLoop.adapt`` embeds the support and query sets once and runs only the
decision layers at each inner step (``functional.embeds_once``). The other side is the same
learner with that path turned off: each step runs the whole network on the task's cut tables,
as every learner did before. Second-order meta-steps (5 inner steps, meta-batch 32, Adam),
the two sides alternating in one process, the best of ``--repeat``; their meta-gradients are
checked equal first. Prints meta-steps/s of each and the ratio per learner and thread count,
and writes them as JSON to ``--out``.
"""

from __future__ import annotations

from collections.abc import Sequence

import efficiency
import torch
from meta_training import bench_config, make_learner, meta_batches

import metarec.learners.functional as functional
from metarec.build import prepare_tasks

ADAPTS = {"melu": "decision", "anil": "last"}


def every_step(net, fast) -> bool:
    """``functional.embeds_once`` turned off: the whole network at every inner step."""
    return False


def meta_gradient(learner, batch, once: bool) -> list[torch.Tensor]:
    functional.embeds_once = ORIGINAL if once else every_step
    learner.zero_grad()
    learner.training_loss(batch).backward()
    return [p.grad.clone() for p in learner.parameters() if p.grad is not None]


def side(learner, batches, once: bool):
    step = efficiency.meta_step_runner(learner.training_loss, learner, batches, 1e-9)

    def run() -> None:
        functional.embeds_once = ORIGINAL if once else every_step
        step()

    return run


ORIGINAL = functional.embeds_once


def main(argv: Sequence[str] | None = None) -> dict:
    parser = efficiency.bench_parser(__doc__.split("\n\n")[0], "results/bench/embed_once.json")
    parser.add_argument("--steps", type=int, default=8, help="meta-steps timed per round")
    args = parser.parse_args(argv)
    result: dict = {"benchmark": "embed_once", "steps_per_round": args.steps,
                    "repeat": args.repeat, "learners": {}}  # fmt: skip
    for name, adapt in ADAPTS.items():
        settings = [f"learner.adapt={adapt}", "learner.inner_steps=5", *args.set]
        cfg = bench_config(args.synthetic, args.root, settings)
        tasks = prepare_tasks(cfg)
        learner = make_learner(cfg, tasks).train()
        batches = meta_batches(tasks, cfg.learner.meta_batch_size, args.steps, cfg.seed)
        once, every = (meta_gradient(learner, batches[0], flag) for flag in (True, False))
        diff = max((a - b).abs().max().item() for a, b in zip(once, every, strict=True))
        largest = max(g.abs().max().item() for g in every)
        print(f"{name} (adapt {adapt}): meta-gradients agree to {diff:.1e} "
              f"(largest {largest:.1e})")  # fmt: skip

        def measure(learner=learner, batches=batches, name=name) -> dict:
            sides = {
                "once": side(learner, batches, True),
                "every step": side(learner, batches, False),
            }
            seconds = efficiency.time_rounds(sides, args.repeat)
            rates = {key: args.steps / min(times) for key, times in seconds.items()}
            ratio = rates["once"] / rates["every step"]
            print(f"{name:>6}: once {rates['once']:.2f} meta-steps/s, every step "
                  f"{rates['every step']:.2f}: {ratio:.2f}x")  # fmt: skip
            return {"meta_steps_per_second": rates, "ratio": ratio}

        timed = efficiency.by_threads(args.threads, measure)
        result["learners"][name] = {"adapt": adapt, "max_abs_diff": diff,
                                    "max_abs_grad": largest, "by_threads": timed}  # fmt: skip
    functional.embeds_once = ORIGINAL
    return efficiency.write_report(args.out, result)


if __name__ == "__main__":
    main()
