"""Results as tables: Markdown for files, rich for the terminal, the paper's rows beside ours."""

from __future__ import annotations

import sys

from metarec.catalog import DATASETS
from metarec.config.schema import RunConfig
from metarec.data.scenarios import ALL_SCENARIOS
from metarec.metrics.names import LIKE_TABLE, RANKING, RUN_TABLE
from metarec.report.cells import cell

BIAS_ROW = "bias baseline"


def metric_names(cfg: RunConfig, metrics: dict | None = None) -> tuple[str, ...]:
    """The table's metric columns for the run's ``task.target`` and scoring: next-item tasks
    show their ranking metrics (and full ranking's, when run), pooled ones their AUC; then the
    dataset's extra metrics."""
    reported = {name for summary in (metrics or {}).values() for name in summary}
    source = DATASETS.get(cfg.data.name)
    if source.scoring == "ranking":
        names = (*(name for name in RANKING if name in reported), "auc")
    elif source.scoring == "pooled":  # one query per task
        names = ("auc", "mae")
    else:
        names = LIKE_TABLE if cfg.task.target == "like" else RUN_TABLE
    return (*names, *source.extra_metrics)


def table_rows(cfg: RunConfig, metrics: dict, baseline: dict | None = None) -> list[list[str]]:
    """One row per (method, scenario): ours, the no-learning bias baseline, the paper's (whose
    tasks are users and whose target is the rating)."""
    rows = []
    methods = {cfg.learner.name: metrics}
    if baseline:
        methods[BIAS_ROW] = baseline
    source = DATASETS.get(cfg.data.name)
    if source.scoring == "rating" and cfg.task.unit == "user" and cfg.task.target == "rating":
        methods.update(source.paper)
    names = metric_names(cfg, metrics)
    for method, results in methods.items():
        for scenario in [name for name in ALL_SCENARIOS if name in metrics]:
            result = results.get(scenario, {})
            rows.append([method, scenario, *(cell(result.get(m)) for m in names),
                         str(result.get("n_tasks", "–"))])  # fmt: skip
    return rows


def markdown_table(
    cfg: RunConfig, metrics: dict, baseline: dict | None = None, seconds: float | None = None
) -> str:
    """A Markdown table of the run's metrics per scenario, with the paper's numbers below."""
    header = ["method", "scenario", *metric_names(cfg, metrics), "tasks"]
    text = "" if cfg.item.text == "none" else f", item text: {cfg.item.text}"
    title = f"{cfg.learner.name} on {cfg.data.name} (seed {cfg.seed}{text})"
    tasks = f"{cfg.task.unit} tasks, target: {cfg.task.target}"
    lines = [f"# {cfg.name}: {title}", "", f"{tasks}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(cfg, metrics, baseline)]
    if seconds is not None:
        lines += ["", f"Wall time: {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def print_table(cfg: RunConfig, metrics: dict, baseline: dict | None = None, console=None) -> None:
    """The table for a person. To a terminal (or a given rich ``console``) compact, to fit 80
    columns: one column per scenario, a block of rows per metric (one row per method), 4
    decimals, folded rather than cut where a terminal is narrower still. To a file or a log
    (stdout not a terminal): the plain Markdown table of ``table.md``, which no width cuts."""
    if console is None and not sys.stdout.isatty():
        print(markdown_table(cfg, metrics, baseline), end="", flush=True)
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = table_rows(cfg, metrics, baseline)  # [method, scenario, *metrics, tasks]
    scenarios = list(dict.fromkeys(row[1] for row in rows))
    by_method: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        by_method.setdefault(row[0], {})[row[1]] = row[2:]
    table = Table(title=cfg.name, box=box.SIMPLE_HEAD,
                  show_edge=False, caption="all digits: metrics.json, table.md")  # fmt: skip
    table.add_column("method", overflow="fold")
    for scenario in scenarios:  # two header lines: "new user" over "item"
        head, _, tail = scenario.rpartition("_")
        table.add_column(f"{head.replace('_', ' ')}\n{tail}" if head else scenario,
                         justify="right", overflow="fold")  # fmt: skip
    for index, metric in enumerate([*metric_names(cfg, metrics), "tasks"]):
        table.add_row(Text(metric, style="bold"), *[""] * len(scenarios))
        for method, cells in by_method.items():
            values = [cells[scenario][index] for scenario in scenarios]
            if any(value != "–" for value in values):  # the paper has some metrics only
                table.add_row(Text(f"  {method}"), *values)  # names are not markup
    (console or Console()).print(table)
