"""The trainable text tower: each distinct item encoded once per batch, against every row.

    HF_HUB_OFFLINE=1 python benchmarks/text_tower.py --root ../shared/data/ml-100k

Builds the tower of ``experiments/tallrec_ml100k/text_full.yaml`` (MiniLM, every weight
trainable) and times, side by side in one process, a forward + backward pass over the items of
``--samples`` TALLRec test samples (10 history items + the target each) two ways: the tower
as it runs (``TextTower.forward``: each distinct item once, cut to the batch's longest text)
and every row encoded as given at full length (``TextTower._encode``). Rounds alternate which
runs first; each side reports its best round. Prints the ratio and the largest difference of
the embeddings and of the gradients.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from metarec.build import prepare_tasks
from metarec.config.load import load_config

CONFIG = Path(__file__).resolve().parents[1] / "experiments" / "tallrec_ml100k" / "text_full.yaml"


def timed(step, rounds: int) -> tuple[float, tuple]:
    """The best of ``rounds`` calls of ``step`` (seconds) and its last result."""
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = step()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/ml-100k", help="the ml-100k folder")
    parser.add_argument("--samples", type=int, default=32, help="test samples in the batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(CONFIG, [f"data.root={args.root}", "trainer.progress_bar=false"])
    tasks = prepare_tasks(cfg)
    batch = tasks.test["warm"][torch.arange(args.samples)]
    rows = torch.cat([batch["support_item"], batch["query_item"]], dim=1)
    torch.manual_seed(0)
    tower = tasks.dataset.items.text_model()
    params = [p for p in tower.parameters() if p.requires_grad]
    weights = torch.randn(*rows.shape, tower.out_dim)
    flat = rows.reshape(-1)

    def step(embed):
        out = embed()
        grads = torch.autograd.grad((out * weights).sum(), params, allow_unused=True)  # the pooler
        return out.detach(), [g for g in grads if g is not None]

    distinct = lambda: step(lambda: tower(rows))  # noqa: E731
    every = lambda: step(lambda: tower._encode(tower.tokens[flat], tower.token_mask[flat])  # noqa: E731
                         .reshape(*rows.shape, -1))  # fmt: skip
    times = {"distinct": float("inf"), "every row": float("inf")}
    results = {}
    for round_ in range(args.rounds):
        order = [("distinct", distinct), ("every row", every)]
        for name, fn in order if round_ % 2 == 0 else order[::-1]:
            seconds, results[name] = timed(fn, 1)
            times[name] = min(times[name], seconds)
    (out_a, grads_a), (out_b, grads_b) = results["distinct"], results["every row"]
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads_a, grads_b, strict=True))
    unique = len(torch.unique(flat))
    print(f"{args.samples} samples: {flat.numel()} item rows, {unique} distinct; "
          f"{tower.tokens.shape[1]} tokens a text at most; {args.threads} thread(s)")  # fmt: skip
    for name, seconds in times.items():
        print(f"  {name:<10} forward + backward {seconds:7.2f} s (best of {args.rounds})")
    print(f"  ratio every row / distinct: {times['every row'] / times['distinct']:.2f}x")
    print(f"  max |embedding diff| {float((out_a - out_b).abs().max()):.2e}, "
          f"max |gradient diff| {grad_diff:.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
