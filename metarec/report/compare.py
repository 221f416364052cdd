"""A reproduction's rows -> per-variant estimates and paired tests -> table and findings.

Every (method, item text) variant of a scenario is scored on identical tasks per seed (the
seed also fixes the data split with ``--data-seeds``). From each run's ``per_task.csv.gz``:
the mean over seeds and a 95% two-level bootstrap interval (tasks within seeds, and seeds;
``metarec.metrics.paired``), and a paired bootstrap test of the primary metric (the first of
the dataset's scoring's columns, :data:`metarec.metrics.names.ESTIMATED`: MAE for ratings,
NDCG@10 for next-item ranking) against the reference (the shrunk bias baseline) and against the
best other variant.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from metarec.data.scenarios import ALL_SCENARIOS
from metarec.errors import DataError
from metarec.metrics.names import METRICS, NAMES
from metarec.metrics.names import label as metric_label
from metarec.metrics.paired import estimate, paired_test
from metarec.metrics.per_task import PER_TASK_FILE, read_per_task
from metarec.report.cells import MISSING, cell

REFERENCES = ("shrunk", "mean")  # the reference baseline: the first of these that ran
ALPHA = 0.01  # a margin counts when its paired test gives p below this
SCENARIO_LABELS = {
    "warm": "warm, held-out users",
    "warm_seen": "warm, seen users (in-sample; MeLU's protocol)",
    "warm_warmup": "warm-up: seen users, unseen ratings (MetaHIN's protocol)",
    "warm_up": "warm-up: the published held-out ratings (MetaHIN's split)",
    "new_user": "new users",
    "new_item": "new items",
    "new_user_item": "new users and items",
}


def _per_task(rows: list[dict]) -> dict[tuple, dict[str, list]]:
    """(method, text, seed, scenario) -> that run's per-task columns."""
    cache: dict[str, dict] = {}
    found = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        folder = row.get("run_dir")
        if folder is None:
            raise DataError(f"runs.json row {row['method']}/{row['text']}/seed {row['seed']} "
                            "has no run_dir: re-run metarec reproduce")  # fmt: skip
        if folder not in cache:
            cache[folder] = read_per_task(Path(folder) / PER_TASK_FILE)
        scenario = row["scenario"]
        if scenario not in cache[folder]:
            raise DataError(f"{Path(folder) / PER_TASK_FILE} has no scenario '{scenario}'")
        found[(row["method"], row["text"], row["seed"], scenario)] = cache[folder][scenario]
    return found


def _paired(
    mine: dict[int, dict], other: dict[int, dict], names: tuple, metric: str
) -> dict | None:
    """Paired test of ``metric`` over the seeds both variants have; identical tasks required."""
    seeds = sorted(set(mine) & set(other))
    if not seeds:
        return None
    for seed in seeds:
        if mine[seed]["task"] != other[seed]["task"]:
            raise DataError(
                f"{names[0]} and {names[1]} were scored on different tasks for seed {seed}; "
                "every run of a comparison needs the same data settings"
            )
    test = paired_test([np.array(mine[s][metric]) for s in seeds],
                       [np.array(other[s][metric]) for s in seeds])  # fmt: skip
    return {"diff": test.diff, "low": test.low, "high": test.high, "p": test.p}


def aggregate(rows: list[dict], estimated: tuple[str, ...]) -> list[dict]:
    """Per (scenario, method, text): estimates of the ``estimated`` metrics with intervals, run
    means of the other metrics, failures, and the paired tests of the primary metric (the first
    of ``estimated``) against the reference and the best other."""
    primary = estimated[0]
    sign = 1 if METRICS[primary].lower_is_better else -1  # ranks best first
    per_task = _per_task(rows)
    variants = list(dict.fromkeys((row["method"], row["text"]) for row in rows))
    summary = []
    for scenario in ALL_SCENARIOS:
        entries, tasks = {}, {}
        for method, text in variants:
            mine = [r for r in rows if (r["method"], r["text"]) == (method, text)]
            ok = [r for r in mine if r.get("scenario") == scenario and r["status"] == "ok"]
            failed = [r for r in mine if r["status"] != "ok"]
            if not ok and not (failed and any(r.get("scenario") == scenario for r in rows)):
                continue  # a scenario this variant's runs do not score
            entry = {"scenario": scenario, "method": method, "text": text, "seeds": len(ok),
                     "primary": primary, "estimated": list(estimated),
                     "failed": len({r["seed"] for r in failed}),
                     "errors": sorted({r["status"] for r in failed})}  # fmt: skip
            entry["seconds"] = statistics.mean(r["seconds"] for r in ok) if ok else None
            columns = {r["seed"]: per_task[(method, text, r["seed"], scenario)] for r in ok}
            for metric in NAMES:
                values = [r[metric] for r in ok if _finite(r.get(metric))]
                entry[metric] = statistics.mean(values) if values else None
            for metric in estimated:
                if entry[metric] is None:
                    continue
                found = estimate([np.array(columns[s][metric]) for s in sorted(columns)])
                entry[metric], entry[f"{metric}_low"], entry[f"{metric}_high"] = (
                    found.mean, found.low, found.high)  # fmt: skip
            entries[(method, text)], tasks[(method, text)] = entry, columns
        reference = next(((m, "none") for m in REFERENCES if (m, "none") in tasks), None)
        ranked = sorted((sign * e[primary], key) for key, e in entries.items()
                        if e.get(primary) is not None)  # fmt: skip
        for key, entry in entries.items():
            if not entry["seeds"]:
                continue
            if reference and key != reference:
                entry["reference"] = f"{reference[0]}"
                entry["vs_reference"] = _paired(
                    tasks[key], tasks[reference], (key, reference), primary
                )
            best = next((other for _, other in ranked if other != key), None)
            if best:
                entry["best_other"] = label(*best)
                entry["vs_best_other"] = _paired(tasks[key], tasks[best], (key, best), primary)
        summary += entries.values()
    return summary


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def label(method: str, text: str) -> str:
    """A variant's name: the method, with ``+text`` when it reads item text."""
    return method if text == "none" else f"{method}+{text}"


def reference_entry(entries: list[dict]) -> dict | None:
    """The reference baseline's entry among a scenario's: the first of ``REFERENCES`` there."""
    by_variant = {(e["method"], e["text"]): e for e in entries}
    return next((by_variant[(m, "none")] for m in REFERENCES if (m, "none") in by_variant), None)


def paper_scenario(scenario: str) -> str | None:
    """The paper's scenario our scenario stands beside: its warm rows are in-sample, so they
    match our seen users; held-out and warm-up users have no paper row."""
    return {"warm_seen": "warm", "warm": None, "warm_warmup": None}.get(scenario, scenario)


def _better(entry: dict) -> int:
    """-1 where a lower primary metric is better (a winning difference is negative), else 1."""
    return -1 if METRICS[entry["primary"]].lower_is_better else 1


def wins(entry: dict, against: str) -> bool:
    """Whether the entry's primary metric is significantly (p < ``ALPHA``) better than
    ``against``'s."""
    test = entry.get(against)
    return bool(test and test["diff"] * _better(entry) > 0 and test["p"] < ALPHA)


def _loses(entry: dict, against: str) -> bool:
    test = entry.get(against)
    return bool(test and test["diff"] * _better(entry) < 0 and test["p"] < ALPHA)


def _estimate_cell(entry: dict, metric: str) -> str:
    if not entry.get("seeds"):
        return "failed"
    if entry.get(metric) is None or f"{metric}_low" not in entry:
        return cell(entry.get(metric))
    low, high = entry[f"{metric}_low"], entry[f"{metric}_high"]
    return f"{cell(entry[metric])} [{cell(low)}, {cell(high)}]"


def _seconds(entry: dict) -> str:
    return MISSING if entry.get("seconds") is None else f"{entry['seconds']:.0f}"


def _p(p: float) -> str:
    return "<.0005" if p < 0.0005 else cell(p).lstrip("0")


def _test_cell(test: dict | None) -> str:
    return MISSING if not test else f"{cell(test['diff'], signed=True)} (p {_p(test['p'])})"


def primary_cell(entry: dict) -> str:
    """The primary metric with its interval and marks: ▲/▼ significantly better/worse than the
    reference, ★ significantly better than every other variant."""
    marks = ("▲" if wins(entry, "vs_reference") else "▼" if _loses(entry, "vs_reference")
             else "") + ("★" if wins(entry, "vs_best_other") else "")  # fmt: skip
    return _estimate_cell(entry, entry["primary"]) + (f" {marks}" if marks else "")


def legend(primary: str, paper_note: str) -> str:
    """How to read the table: the interval, the paired tests of ``primary`` and its marks, the
    direction of every column, and ``paper_note`` (the dataset's: which of the paper's rows
    stand beside which of ours)."""
    name, better = METRICS[primary].label, METRICS[primary].better
    return (
        "Ours: mean over seeds [95% two-level bootstrap interval: tasks within each seed, and "
        "the seeds, which also draw the data split]; identical tasks for every method within a "
        f"seed. Rows sorted by {name} ({better}); MAE and RMSE: lower is better; nDCG, HR and "
        f"MRR: higher is better. Δ: the paired mean per-task {name} difference against the bias "
        "baseline (`shrunk`, item mean and user offset with pseudo-counts picked on validation "
        "users; the plain `mean` (item mean or popularity) where `shrunk` did not run) and "
        "against the best other method, with its paired bootstrap p-value. ▲ / ▼: "
        f"{name} significantly (p < {ALPHA}) better / worse than the bias baseline; ★: "
        f"significantly better than every other method. {paper_note}"
    ).rstrip()


def table_lines(summary: list[dict], paper: dict, estimated: tuple[str, ...]) -> list[str]:
    """The Markdown rows: per scenario the paper's rows (where it has that protocol) and ours,
    ours sorted best first by the primary metric (the first of ``estimated``)."""
    primary = METRICS[estimated[0]]
    sign = 1 if primary.lower_is_better else -1
    header = ["scenario", "method", "item text", *map(metric_label, estimated),
              f"Δ {primary.label} vs bias baseline", f"Δ {primary.label} vs best other",
              "seconds per run", "seeds"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for scenario in ALL_SCENARIOS:
        mine = [e for e in summary if e["scenario"] == scenario]
        if not mine:
            continue
        for method, results in paper.items():
            values = results.get(paper_scenario(scenario), {})
            if values:
                cells = [cell(values.get(m)) for m in estimated]
                lines.append(f"| {scenario} | {method} | – | " + " | ".join(cells)
                             + " | – | – | – | – |")  # fmt: skip
        metric = primary.name
        for entry in sorted(
            mine, key=lambda e: (e.get(metric) is None, sign * (e.get(metric) or 0))
        ):
            failed = f" ({entry['failed']} failed)" if entry["failed"] else ""
            seeds = f"{entry['seeds']}{failed}"
            cells = [primary_cell(entry), *(_estimate_cell(entry, m) for m in estimated[1:])]
            best = entry.get("vs_best_other")
            versus = f"{_test_cell(best)} vs {entry['best_other']}" if best else "–"
            lines.append(f"| {scenario} | {entry['method']} | {entry['text']} | "
                         + " | ".join(cells) + f" | {_test_cell(entry.get('vs_reference'))} | "
                         f"{versus} | {_seconds(entry)} | {seeds} |")  # fmt: skip
    return lines


def findings(
    summary: list[dict], paper: dict, warmup_goal: float | None = None, paper_best: str = ""
) -> list[str]:
    """One generated sentence per scenario (best variant by the primary metric, its margin over
    the reference and p-value, which variants beat the reference, how many are better than the
    paper's own method's row ``paper_best``), then the failures: the only prose the docs state
    about these numbers."""
    lines = []
    for scenario in ALL_SCENARIOS:
        mine = [e for e in summary if e["scenario"] == scenario and e.get(e["primary"]) is not None]
        if not mine:
            continue
        metric = METRICS[mine[0]["primary"]]
        key, lower = metric.name, metric.lower_is_better
        side = "below" if lower else "above"
        best = (min if lower else max)(mine, key=lambda e: e[key])
        ref = reference_entry(mine)
        text = f"- **{SCENARIO_LABELS[scenario]}**: best `{label(best['method'], best['text'])}` "
        text += f"{metric.label} {_estimate_cell(best, key)}"
        if ref and best is not ref:
            test = best["vs_reference"]
            verdict = "a significant margin" if wins(best, "vs_reference") else (
                f"not significant at p < {ALPHA}")  # fmt: skip
            text += (f", {cell(abs(test['diff']))} {side} the bias baseline `{ref['method']}` "
                     f"({cell(ref[key])}; p {_p(test['p'])}, {verdict})")  # fmt: skip
        elif ref:
            text += f" — the bias baseline `{ref['method']}` itself; no learner is better"
        beating = [label(e["method"], e["text"]) for e in mine if wins(e, "vs_reference")]
        name = f"the bias baseline `{ref['method']}`" if ref else "a bias baseline (none ran)"
        text += (f". Significantly better than {name} (p < {ALPHA}): "
                 f"{', '.join(f'`{b}`' for b in beating)}." if beating else
                 f". **No learner beats {name} with p < {ALPHA}.**")  # fmt: skip
        published = paper.get(paper_best, {}).get(paper_scenario(scenario), {}).get(key)
        if published is not None:
            better = [e for e in mine if (e[f"{key}_high"] < published if lower
                                          else e[f"{key}_low"] > published)]  # fmt: skip
            method = paper_best.removesuffix(" (paper)")
            text += (f" Better than {method}'s published {cell(published)} (whole interval): "
                     f"{len(better)} of {len(mine)} variants.")  # fmt: skip
        if scenario == "warm_warmup" and warmup_goal is not None:
            met = best[key] <= warmup_goal
            text += (f" Goal {metric.label} <= {cell(warmup_goal, 2)}: "
                     f"{'met' if met else 'not met'} (best {cell(best[key])}).")  # fmt: skip
        lines.append(text)
    failed = sorted({(e["method"], e["text"], err) for e in summary for err in e["errors"]})
    if failed:
        lines += ["", "Failed runs:", ""]
        lines += [f"- {m} (item.text={t}): {err}" for m, t, err in failed]
    return lines
