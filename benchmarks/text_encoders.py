"""Item text in the loop (frozen / full / LoRA encoder; global and per task) against ID-only
methods on identical next-item tasks, with each run's cost beside its quality (issue 19).

    python benchmarks/text_encoders.py --seeds 0,1 --encoder-seeds 0
    python benchmarks/text_encoders.py --full-ranking --rows mean,global_id,frozen_maml \
        --set data.amazon.max_eval_tasks=0 --out benchmarks/results/full_ranking
    python benchmarks/text_encoders.py --device cuda --precision bf16-mixed \
        --model BAAI/bge-base-en-v1.5 --seeds 0,1,2              # the same rows on a GPU

Runs ``experiments/amazon_unisrec/<row>.yaml`` (``--rows``, default all) for each seed
(``seed`` and ``data.seed`` both: a seed fixes the new items, the tasks and the training), each
in a fresh subprocess so that its peak memory is its own. A run records its trainable
parameters, peak memory (CPU: the process's max RSS; CUDA: ``max_memory_allocated``), fit
seconds, evaluation seconds per test task (adaptation + prediction) and every test task's
HR@10 / NDCG@10. The summary gives each row's mean and two-level bootstrap 95% interval
(seeds, then tasks; :mod:`metarec.metrics.paired`) per scenario and a paired test of each
text row against the best ID-only row on the seeds both ran. ``--full-ranking`` ranks each
next item against every item (``task.full_ranking``) and reports full HR@10 / NDCG@10. Writes
``text_encoders.csv`` (runs), ``text_encoders.json`` (runs + summary), ``text_encoders.md`` and
``text_encoders.png`` into ``--out``. Finished runs in the JSON are kept, not re-run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from metarec.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from metarec.metrics.paired import estimate, paired_test

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments" / "amazon_unisrec"
STEM = "text_encoders"
SCENARIOS = ("warm", "new_item")
METRICS = ("hr@10", "ndcg@10")
FULL = ("full_hr@10", "full_ndcg@10")  # --full-ranking: against every item, not 100
# Row -> (item representation, encoder, adaptation); the table's order.
ROWS = {
    "mean": ("ID", "-", "popularity"),
    "global_id": ("ID", "-", "global"),
    "maml_id": ("ID", "-", "MAML"),
    "mf_id": ("ID", "-", "MF fold-in"),
    "frozen_global": ("text", "frozen", "global"),
    "frozen_finetune": ("text", "frozen", "finetune"),
    "frozen_lora": ("text", "frozen", "LoRA head"),
    "frozen_maml": ("text", "frozen", "MAML head"),
    "frozen_anil": ("text", "frozen", "ANIL head"),
    "full_global": ("text", "full", "global"),
    "full_finetune": ("text", "full", "finetune"),
    "lora_global": ("text", "lora", "global"),
    "lora_finetune": ("text", "lora", "LoRA per task"),
}
# Pairs compared head to head, each on the seeds both ran: full fine-tuning against LoRA of the
# encoder; the meta-learned heads against per-task fine-tuning of the global text model.
VERSUS = (("full_global", "lora_global"), ("full_finetune", "lora_finetune"),
          ("frozen_maml", "frozen_finetune"), ("frozen_anil", "frozen_finetune"))  # fmt: skip
CSV_FIELDS = ["row", "seed", "status", "trainable_params", "peak_mb", "fit_seconds",
              "eval_seconds", "test_tasks", "seconds_per_task", "seconds"]  # fmt: skip


def device_overrides(device: str, precision: str | None, model: str | None) -> list[str]:
    """Config overrides of ``--device``, ``--precision`` and ``--model`` (the same rows on a
    GPU with a bigger model)."""
    overrides = []
    if device == "cuda":
        overrides += ["trainer.accelerator=gpu", "encoder.device=cuda"]
    if precision:
        overrides.append(f"trainer.precision={precision}")
        if precision.startswith("bf16"):
            overrides.append("encoder.dtype=bfloat16")
    if model:
        overrides.append(f"encoder.model={model}")
    return overrides


def run_one(config: Path, seed: int, overrides: list[str]) -> dict:
    """Train one row in this process; its cost and per-task metrics (the child's work)."""
    import torch

    import metarec.pipeline as pipeline
    from metarec.config.load import load_config
    from metarec.metrics.per_task import PER_TASK_FILE, read_per_task

    seen: dict = {}
    build, evaluate = pipeline.build_learner, pipeline.evaluate

    def counted_build(*args, **kwargs):  # the learner, to count its trainable weights
        seen["learner"] = build(*args, **kwargs)
        return seen["learner"]

    def timed_evaluate(*args, **kwargs):  # the test scenarios' adaptation + prediction
        start = time.perf_counter()
        metrics = evaluate(*args, **kwargs)
        seen["eval_seconds"] = time.perf_counter() - start
        return metrics

    # train() looks both up in its module when it runs: timing them needs no copy of it.
    pipeline.build_learner, pipeline.evaluate = counted_build, timed_evaluate
    settings = [*overrides, f"seed={seed}", f"data.seed={seed}", "trainer.progress_bar=false"]
    try:
        result = pipeline.train(load_config(config, settings))
    finally:
        pipeline.build_learner, pipeline.evaluate = build, evaluate
    if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
        return {}  # a DDP process Lightning launched beside rank 0, which alone writes the run
    per_task = read_per_task(result.run_dir / PER_TASK_FILE)
    tasks = sum(len(per_task[scenario]["task"]) for scenario in per_task)
    cuda = torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0
    peak_mb = (torch.cuda.max_memory_allocated() if cuda else
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20  # fmt: skip
    learner = seen["learner"]
    return {
        "trainable_params": sum(p.numel() for p in learner.parameters() if p.requires_grad),
        "peak_mb": round(peak_mb, 1),
        "peak_kind": "cuda max_memory_allocated" if cuda else "cpu max rss",
        "seconds": round(result.seconds, 1),
        "eval_seconds": round(seen["eval_seconds"], 2),
        "fit_seconds": round(result.seconds - seen["eval_seconds"], 1),
        "test_tasks": tasks,
        "seconds_per_task": round(seen["eval_seconds"] / max(tasks, 1), 4),
        "metrics": {
            s: {m: float(v) for m, v in values.items()} for s, values in result.metrics.items()
        },
        "per_task": {
            s: {m: per_task[s][m] for m in (*METRICS, *FULL) if m in per_task[s]} for s in per_task
        },
        "run_dir": str(result.run_dir),
    }


def launch(row: str, seed: int, overrides: list[str], folder: Path, experiments: Path) -> dict:
    """One run in a fresh subprocess (its own peak memory); a ``failed`` row on error."""
    answer = folder / f"{row}-seed{seed}.json"
    command = [sys.executable, __file__, "--child", row, "--child-seed", str(seed),
               "--child-out", str(answer), f"--experiments={experiments}",
               *(f"--set={o}" for o in overrides)]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{row}-seed{seed}.log"
    atomic_write_text(log, done.stdout + done.stderr)
    if done.returncode != 0 or not answer.is_file():
        errors = [line for line in done.stderr.splitlines() if "Error" in line] or ["no error"]
        print(done.stderr[-3000:], file=sys.stderr)
        status = f"failed (exit {done.returncode}, log {log}): {errors[-1]}"
        return {"row": row, "seed": seed, "status": status}
    return {"row": row, "seed": seed, "status": "ok", **json.loads(answer.read_text())}


def per_seed(runs: list[dict], row: str, scenario: str, metric: str) -> dict[int, np.ndarray]:
    """``{seed: per-task values}`` of one row's finished runs."""
    mine = [run for run in runs if run["row"] == row and run["status"] == "ok"]
    return {run["seed"]: np.asarray(run["per_task"][scenario][metric])
            for run in mine if scenario in run["per_task"]}  # fmt: skip


def summarize(runs: list[dict], metrics: tuple[str, str] = METRICS) -> dict:
    """Per row: cost means over seeds; per scenario and metric (HR@10, NDCG@10; ``FULL`` for
    full ranking) the estimate; and per scenario a paired test against the best ID-only row by
    mean NDCG@10."""
    hr, ndcg = metrics
    rows = [row for row in ROWS if any(r["row"] == row and r["status"] == "ok" for r in runs)]
    rows += sorted({r["row"] for r in runs if r["status"] == "ok"} - set(rows))
    summary: dict = {"metrics": list(metrics), "rows": {}, "reference": {}}
    for scenario in SCENARIOS:
        id_rows = [row for row in rows if ROWS.get(row, ("",))[0] == "ID"
                   and per_seed(runs, row, scenario, ndcg)]  # fmt: skip
        means = {row: np.mean([v.mean() for v in per_seed(runs, row, scenario, ndcg).values()])
                 for row in id_rows}  # fmt: skip
        summary["reference"][scenario] = max(means, key=means.get) if means else None
    for row in rows:
        ok = [r for r in runs if r["row"] == row and r["status"] == "ok"]
        entry = {"seeds": sorted(r["seed"] for r in ok), "scenarios": {}}
        for key in ("trainable_params", "peak_mb", "fit_seconds", "seconds_per_task"):
            entry[key] = float(np.mean([r[key] for r in ok]))
        for scenario in SCENARIOS:
            cells = {}
            for metric in metrics:
                values = per_seed(runs, row, scenario, metric)
                if not values:
                    continue
                cells[metric] = estimate(list(values.values())).__dict__
                reference = summary["reference"][scenario]
                if reference is None or reference == row:
                    continue
                other = per_seed(runs, reference, scenario, metric)
                common = sorted(set(values) & set(other))
                if common:
                    test = paired_test([values[s] for s in common], [other[s] for s in common])
                    cells[f"{metric} vs {reference}"] = {**test.__dict__, "seeds": common}
            entry["scenarios"][scenario] = cells
        summary["rows"][row] = entry
    summary["versus"] = versus(runs, metrics[1])
    return summary


def versus(runs: list[dict], metric: str) -> list[dict]:
    """Each ``VERSUS`` pair that both ran: per scenario the paired test of ``metric`` (first
    minus second) and the cost ratios (trainable parameters, peak memory, s/task)."""
    found = []
    for first, second in VERSUS:
        ok = {row: [r for r in runs if r["row"] == row and r["status"] == "ok"]
              for row in (first, second)}  # fmt: skip
        if not all(ok.values()):
            continue
        ratio = {key: float(np.mean([r[key] for r in ok[first]])
                            / max(np.mean([r[key] for r in ok[second]]), 1e-12))
                 for key in ("trainable_params", "peak_mb", "seconds_per_task")}  # fmt: skip
        tests = {}
        for scenario in SCENARIOS:
            mine, other = (per_seed(runs, row, scenario, metric) for row in (first, second))
            common = sorted(set(mine) & set(other))
            if common:
                test = paired_test([mine[s] for s in common], [other[s] for s in common])
                tests[scenario] = {**test.__dict__, "seeds": common}
        found.append({"first": first, "second": second, "ratio": ratio, "tests": tests})
    return found


def _estimate(cell: dict | None) -> str:
    return "-" if cell is None else f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _test(cell: dict | None) -> str:
    if cell is None:
        return "-"
    p = "<.001" if cell["p"] < 0.001 else f"{cell['p']:.3f}"
    return f"{cell['diff']:+.3f} (p {p})"


def markdown(summary: dict, title: str) -> str:
    """One line per row: representation, cost, HR@10 / NDCG@10 with intervals per scenario,
    and the NDCG@10 difference to the best ID-only row with its paired p-value."""
    refs = summary["reference"]
    hr, ndcg = summary.get("metrics", METRICS)
    full = "full " if hr.startswith("full_") else ""
    candidates = ("every item is a candidate (full ranking)" if full else
                  "100 candidates per task (the next item + 99 sampled)")  # fmt: skip
    lines = [f"# {title}", "",
             f"Mean [95% two-level bootstrap interval over seeds and tasks] on identical tasks; "
             f"{candidates}. Δ: {full}NDCG@10 minus that of "
             f"the best ID-only row (warm: {refs.get('warm')}, new_item: {refs.get('new_item')}), "
             "paired bootstrap p. Cost: trainable parameters, peak memory, fit seconds, "
             "evaluation milliseconds per test task (adaptation + prediction).", "",
             "| row | items | encoder | adaptation | seeds | params | peak MB | fit s | ms/task "
             f"| warm {full}HR@10 | warm {full}NDCG@10 | Δ warm "
             f"| new {full}HR@10 | new {full}NDCG@10 | Δ new |",
             "|---" * 15 + "|"]  # fmt: skip
    for row, entry in summary["rows"].items():
        items, encoder, adaptation = ROWS.get(row, ("?", "?", "?"))
        milliseconds = 1000 * entry["seconds_per_task"]
        cells = [row, items, encoder, adaptation, ",".join(map(str, entry["seeds"])),
                 f"{entry['trainable_params']:,.0f}", f"{entry['peak_mb']:,.0f}",
                 f"{entry['fit_seconds']:.0f}", f"{milliseconds:.1f}"]  # fmt: skip
        for scenario in SCENARIOS:
            found = entry["scenarios"].get(scenario, {})
            cells += [_estimate(found.get(hr)), _estimate(found.get(ndcg)),
                      _test(found.get(f"{ndcg} vs {refs.get(scenario)}"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if summary.get("versus"):
        lines += ["", "Head to head (full fine-tuning against LoRA of the encoder; meta-learned "
                  f"heads against per-task fine-tuning): {full}NDCG@10 difference "
                  "(first minus second) [95% paired interval], p; cost ratios first / second.",
                  "", "| first | second | Δ warm | Δ new | params × | peak MB × | s/task × |",
                  "|---" * 7 + "|"]  # fmt: skip
        for pair in summary["versus"]:
            cells = [pair["first"], pair["second"]]
            for scenario in SCENARIOS:
                test = pair["tests"].get(scenario)
                interval = "" if test is None else f" [{test['low']:+.3f}, {test['high']:+.3f}]"
                cells.append(_test(test) + interval)
            cells += [f"{pair['ratio'][k]:.2f}" for k in
                      ("trainable_params", "peak_mb", "seconds_per_task")]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """NDCG@10 per row and scenario with intervals; new-item NDCG@10 against s/task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(summary["rows"])
    ndcg = summary.get("metrics", METRICS)[1]
    figure, (bars, cost) = plt.subplots(1, 2, figsize=(13, 4.5))
    for offset, scenario in zip((-0.2, 0.2), SCENARIOS, strict=True):
        cells = [summary["rows"][row]["scenarios"].get(scenario, {}).get(ndcg) for row in rows]
        means = [c["mean"] if c else np.nan for c in cells]
        errors = [[c["mean"] - c["low"] if c else 0 for c in cells],
                  [c["high"] - c["mean"] if c else 0 for c in cells]]  # fmt: skip
        bars.bar(np.arange(len(rows)) + offset, means, 0.4, yerr=errors, label=scenario, capsize=2)
    bars.set_xticks(range(len(rows)), rows, rotation=45, ha="right")
    bars.set_ylabel(f"{ndcg} (95% interval)")
    bars.legend()
    for row in rows:
        entry = summary["rows"][row]
        cell = entry["scenarios"].get("new_item", {}).get(ndcg)
        if cell:
            marker = "o" if ROWS.get(row, ("ID",))[0] == "ID" else "s"
            cost.scatter(max(entry["seconds_per_task"], 1e-4), cell["mean"], marker=marker)
            cost.annotate(row, (max(entry["seconds_per_task"], 1e-4), cell["mean"]), fontsize=7)
    cost.set_xscale("log")
    cost.set_xlabel("evaluation seconds per test task")
    cost.set_ylabel(f"new_item {ndcg}")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def write(out: Path, runs: list[dict], title: str, metrics: tuple[str, str] = METRICS) -> dict:
    """The runs (CSV, JSON with the summary), the Markdown table and the plot, atomically."""
    from metarec.report.files import write_csv

    summary = summarize(runs, metrics)
    flat = []
    for run in runs:
        line = {key: run.get(key) for key in CSV_FIELDS}
        for scenario, values in run.get("metrics", {}).items():
            line.update({f"{scenario}/{metric}": values.get(metric) for metric in metrics})
        flat.append(line)
    columns = [*CSV_FIELDS, *(f"{s}/{m}" for s in SCENARIOS for m in metrics)]
    write_csv(out / f"{STEM}.csv", flat, columns)
    atomic_write_json(out / f"{STEM}.json", {"runs": runs, "summary": summary})
    table = markdown(summary, title)
    atomic_write_text(out / f"{STEM}.md", table)
    if summary["rows"]:
        plot(summary, out / f"{STEM}.png")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", help=f"comma-separated; default: {','.join(ROWS)}")
    parser.add_argument("--seeds", default="0", help="seeds of the rows without an encoder in "
                        "the loop (comma-separated)")  # fmt: skip
    parser.add_argument("--encoder-seeds", help="seeds of the full / lora rows (default --seeds)")
    parser.add_argument("--set", action="append", default=[], help="key=value for every run")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", help="trainer.precision, e.g. bf16-mixed (bf16 encoder)")
    parser.add_argument("--model", help="encoder.model, e.g. a bigger Hugging Face encoder")
    parser.add_argument(
        "--full-ranking",
        action="store_true",
        help="rank each next item "
        "against every item (task.full_ranking=true); full HR@10 / NDCG@10",
    )
    parser.add_argument("--experiments", type=Path, default=EXPERIMENTS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one run, in the subprocess launch() started
        found = run_one(args.experiments / f"{args.child}.yaml", args.child_seed, args.set)
        if found:  # rank 0
            atomic_write_json(args.child_out, found)
        return
    ranking = ["task.full_ranking=true"] if args.full_ranking else []
    metrics = FULL if args.full_ranking else METRICS
    overrides = [*ranking, *args.set, *device_overrides(args.device, args.precision, args.model),
                 f"output_dir={args.out / 'runs'}"]  # fmt: skip
    rows = args.rows.split(",") if args.rows else list(ROWS)
    seeds = [int(s) for s in args.seeds.split(",")]
    encoder_seeds = [int(s) for s in (args.encoder_seeds or args.seeds).split(",")]
    saved = args.out / f"{STEM}.json"
    runs = json.loads(saved.read_text())["runs"] if saved.is_file() else []
    runs = [run for run in runs if run["status"] == "ok"]
    title = f"Amazon Scientific, text in the loop: {' '.join(overrides[:-1]) or 'defaults'}"
    for row in rows:
        in_loop = ROWS.get(row, ("", ""))[1] in ("full", "lora")
        for seed in encoder_seeds if in_loop else seeds:
            if any(run["row"] == row and run["seed"] == seed for run in runs):
                continue
            start = time.perf_counter()
            run = launch(row, seed, overrides, args.out / "children", args.experiments)
            runs.append(run)
            print(f"{row} seed {seed}: {run['status']} in {time.perf_counter() - start:.0f} s",
                  flush=True)  # fmt: skip
            write(args.out, runs, title, metrics)
    write(args.out, runs, title, metrics)
    print((args.out / f"{STEM}.md").read_text())


if __name__ == "__main__":
    main()
