"""The leaderboard: every dataset's reproduction summary in one page, methods ranked.

Reads each dataset's ``summary.json`` (:func:`metarec.report.compare.aggregate`, or the pooled
report's for TALLRec's samples) and writes, per dataset and scenario, the methods ranked best
first by the dataset's primary metric (MAE for ratings, NDCG@10 for next-item ranking, pooled
AUC for TALLRec), with their 95% intervals and paired tests against the bias baseline; before
them, the best simple baseline's rank in each scenario; then, per method, where it is
significantly better or worse than that baseline and where it ranks first; last, every
learner x dataset: on the board, or why not. Every number comes from the summaries; nothing is
recomputed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from metarec.metrics.names import METRICS
from metarec.report.cells import MISSING, cell
from metarec.report.compare import ALPHA, SCENARIO_LABELS, label


@dataclass(frozen=True)
class Board:
    """One dataset's ranked rows: (group, metric name, entries best first) per scenario or
    grid point."""

    dataset: str
    groups: list[tuple[str, str, list[dict]]]


def _metric_of(entry: dict) -> str:
    return entry.get("primary", "auc" if "grid" in entry else "mae")


def _groups(summary: list[dict]) -> list[tuple[str, list[dict]]]:
    """Entries grouped by scenario (rating and ranking reports) or grid point (pooled)."""
    keys = ("grid",) if summary and "grid" in summary[0] else ("scenario",)
    groups: dict[str, list[dict]] = {}
    for entry in summary:
        name = " ".join(f"{k} {entry[k]}" if k == "grid" else entry[k] for k in keys)
        groups.setdefault(name, []).append(entry)
    return list(groups.items())


def board(dataset: str, summary: list[dict]) -> Board:
    """The dataset's entries with a result, ranked best first in each group."""
    ranked = []
    for name, entries in _groups(summary):
        scored = [e for e in entries if e.get(_metric_of(e)) is not None]
        if not scored:
            continue
        metric = _metric_of(scored[0])
        sign = 1 if METRICS[metric].lower_is_better else -1
        ranked.append((name, metric, sorted(scored, key=lambda e: sign * e[metric])))
    return Board(dataset, ranked)


def _verdict(entry: dict, metric: str) -> str:
    """▲ / ▼: significantly (p < ALPHA) better / worse than the bias baseline; the baseline is
    ``ref``; ``–`` otherwise."""
    test = entry.get("vs_reference")
    if not test:
        return "ref" if entry.get("reference") in (None, label(entry["method"], entry["text"]),
                                                   entry["method"]) else MISSING  # fmt: skip
    better = test["diff"] * (-1 if METRICS[metric].lower_is_better else 1) > 0
    if test["p"] >= ALPHA:
        return MISSING
    return "▲" if better else "▼"


def _interval(entry: dict, metric: str) -> str:
    low, high = entry.get(f"{metric}_low"), entry.get(f"{metric}_high")
    bounds = f" [{cell(low)}, {cell(high)}]" if low is not None else ""
    return f"{cell(entry[metric])}{bounds}"


def _test(entry: dict) -> str:
    test = entry.get("vs_reference")
    if not test:
        return MISSING
    p = "<.0005" if test["p"] < 0.0005 else cell(test["p"]).lstrip("0")
    return f"{cell(test['diff'], signed=True)} (p {p})"


def board_lines(found: Board) -> list[str]:
    """A section per dataset: per group, the ranked methods."""
    lines = [f"## {found.dataset}", ""]
    for name, metric, entries in found.groups:
        what = METRICS[metric]
        heading = SCENARIO_LABELS.get(name, name)
        lines += [f"**{heading}** ({what.label}, {what.better})", "",
                  f"| rank | method | {what.label} [95% interval] | Δ vs bias baseline | "
                  "vs bias baseline | seeds | seconds per run |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for rank, entry in enumerate(entries, 1):
            seconds = entry.get("seconds")
            lines.append(
                f"| {rank} | {label(entry['method'], entry['text'])} | {_interval(entry, metric)} "
                f"| {_test(entry)} | {_verdict(entry, metric)} | {entry.get('seeds', MISSING)} | "
                f"{MISSING if seconds is None else f'{seconds:.0f}'} |"
            )
        lines.append("")
    return lines


def wins_lines(boards: list[Board]) -> list[str]:
    """Per method: where it is significantly better (▲) or worse (▼) than the bias baseline,
    and where it ranks first."""
    record: dict[str, dict[str, list[str]]] = {}
    for found in boards:
        for name, metric, entries in found.groups:
            where = f"{found.dataset} {name}"
            for rank, entry in enumerate(entries, 1):
                mine = record.setdefault(label(entry["method"], entry["text"]),
                                         {"first": [], "▲": [], "▼": []})  # fmt: skip
                verdict = _verdict(entry, metric)
                if verdict in ("▲", "▼"):
                    mine[verdict].append(where)
                if rank == 1:
                    mine["first"].append(where)
    lines = ["## Where each method wins", "",
             "| method | ranks first | significantly better than the bias baseline (▲) | "
             "significantly worse (▼) |", "|---|---|---|---|"]  # fmt: skip
    for method in sorted(record, key=lambda m: (-len(record[m]["▲"]), len(record[m]["▼"]), m)):
        mine = record[method]
        cells = [", ".join(mine[key]) or MISSING for key in ("first", "▲", "▼")]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


LEGEND = (
    "Each dataset's rows come from its reproduction's `summary.json` (identical tasks for "
    "every method within a seed; the seeds also draw the data split). Ranked best first by "
    "the dataset's primary metric; the interval is the two-level bootstrap (tasks within "
    "seeds, and seeds). Δ: the paired mean per-task difference against the bias baseline "
    "(`shrunk`, else `mean`: the item mean or popularity; TALLRec: the best no-training row), "
    f"with its paired bootstrap p-value; ▲ / ▼: significantly (p < {ALPHA}) better / worse "
    "than it; `ref`: the baseline itself; –: no significant difference."
)


# The simple baselines' learners: ``mean`` (item mean or popularity, the shrunk bias baseline,
# the user's history), biased MF, and ``textsim`` (item texts' cosine, no training).
SIMPLE_LEARNERS = ("mean", "mf", "textsim")


def simple_lines(boards: list[Board], learner_of: dict[tuple[str, str], str]) -> list[str]:
    """Per dataset and group: the best simple baseline's rank among every row, and the row
    ranked first with its verdict against the bias baseline (``learner_of``: a (dataset,
    method)'s learner)."""
    lines = ["## The simple baselines' rank", "",
             "The best simple baseline in each scenario (learner `mean`: item mean or popularity, "
             "the shrunk bias baseline, the user's history; `mf`: biased MF; `textsim`: the "
             "cosine of item texts to the user's rated items', no training), its rank "
             "among every row, and the row ranked first with its verdict against the bias "
             "baseline.", "",
             "| dataset | scenario | best simple baseline | its rank | ranked first | "
             "first vs bias baseline |", "|---|---|---|---|---|---|"]  # fmt: skip
    for found in boards:
        for name, metric, entries in found.groups:
            simple = [
                (rank, entry)
                for rank, entry in enumerate(entries, 1)
                if learner_of.get((found.dataset, entry["method"])) in SIMPLE_LEARNERS
            ]
            if not simple:
                continue
            rank, best = simple[0]
            first = entries[0]
            lines.append(f"| {found.dataset} | {SCENARIO_LABELS.get(name, name)} | "
                         f"{label(best['method'], best['text'])} | {rank} of {len(entries)} | "
                         f"{label(first['method'], first['text'])} | "
                         f"{_verdict(first, metric)} |")  # fmt: skip
    return lines + [""]


def coverage_lines(
    datasets: list[str],
    learners: list[str],
    ran: dict[str, set[str]],
    reasons: dict[str, dict[str, str]],
    idle: dict[str, list[str]] | None = None,
) -> list[str]:
    """Every learner x dataset: ✓ where a row of the learner is on the board (``ran``: each
    dataset's learners with rows); else its reason (``reasons[dataset][learner]``, from
    ``experiments/coverage.yaml``) as a numbered note, or **not run** without one. Then the
    experiment files with no row (``idle``: per dataset), each with its reason if any."""
    notes: list[str] = []
    lines = ["## Coverage: every learner on every dataset", "",
             "✓: at least one row of the learner is on the board; otherwise why not (notes "
             "below, from `experiments/coverage.yaml`).", "",
             "| learner | " + " | ".join(datasets) + " |",
             "|---|" + "---|" * len(datasets)]  # fmt: skip
    for learner in learners:
        cells = []
        for dataset in datasets:
            reason = reasons.get(dataset, {}).get(learner)
            if learner in ran.get(dataset, set()):
                cells.append("✓")
            elif reason is None:
                cells.append("**not run**")
            else:
                note = f"{dataset}, {learner}: {reason}"
                if note not in notes:
                    notes.append(note)
                cells.append(f"n/a ({notes.index(note) + 1})")
        lines.append(f"| {learner} | " + " | ".join(cells) + " |")
    lines += ["", *(f"{i}. {note}" for i, note in enumerate(notes, 1)), ""]
    files = [f"- {dataset} `{method}`: {reasons.get(dataset, {}).get(method, '**not run**')}"
             for dataset, methods in (idle or {}).items() for method in methods]  # fmt: skip
    if files:
        lines += ["Experiment files with no row on the board:", "", *files, ""]
    return lines
