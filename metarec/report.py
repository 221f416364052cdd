"""Results as tables: Markdown for files, rich for the terminal, the paper's rows beside ours."""

from __future__ import annotations

from metarec.config import RunConfig
from metarec.data.datamodule import SCENARIOS

METRICS = ("mae", "rmse", "ndcg@1", "ndcg@3", "auc", "f1")
# With ``task.target: like`` the predictions are probabilities: ranking and classification.
LIKE_METRICS = ("auc", "precision", "recall", "f1", "ndcg@1", "ndcg@3")

# MeLU (Lee et al., KDD 2019), Table 2, MovieLens-1M: MAE / nDCG@1 / nDCG@3.
PAPER = {
    "melu-ml1m": {
        "MeLU-5 (paper)": {
            "warm": {"mae": 0.7567, "ndcg@1": 0.8870, "ndcg@3": 0.8919},
            "new_user": {"mae": 0.7854, "ndcg@1": 0.8803, "ndcg@3": 0.8812},
            "new_item": {"mae": 0.9275, "ndcg@1": 0.7697, "ndcg@3": 0.8005},
            "new_user_item": {"mae": 0.9235, "ndcg@1": 0.7752, "ndcg@3": 0.8008},
        }
    }
}


def _cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


BIAS_ROW = "bias baseline"


def metric_names(cfg: RunConfig) -> tuple[str, ...]:
    """The table's metric columns for the run's ``task.target``."""
    return LIKE_METRICS if cfg.task.target == "like" else METRICS


def table_rows(cfg: RunConfig, metrics: dict, baseline: dict | None = None) -> list[list[str]]:
    """One row per (method, scenario): ours, the no-learning bias baseline, the paper's (whose
    tasks are users and whose target is the rating)."""
    rows = []
    methods = {cfg.learner.name: metrics}
    if baseline:
        methods[BIAS_ROW] = baseline
    if cfg.task.unit == "user" and cfg.task.target == "rating":
        methods.update(PAPER.get(cfg.data.name, {}))
    for method, results in methods.items():
        for scenario in [name for name in SCENARIOS if name in metrics]:
            result = results.get(scenario, {})
            rows.append([method, scenario, *(_cell(result.get(m)) for m in metric_names(cfg)),
                         str(result.get("n_tasks", "–"))])  # fmt: skip
    return rows


def markdown_table(
    cfg: RunConfig, metrics: dict, baseline: dict | None = None, seconds: float | None = None
) -> str:
    """A Markdown table of the run's metrics per scenario, with the paper's numbers below."""
    header = ["method", "scenario", *metric_names(cfg), "tasks"]
    text = "" if cfg.item.text == "none" else f", item text: {cfg.item.text}"
    title = f"{cfg.learner.name} on {cfg.data.name} (seed {cfg.seed}{text})"
    tasks = f"{cfg.task.unit} tasks, target: {cfg.task.target}"
    lines = [f"# {cfg.name}: {title}", "", f"{tasks}.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(cfg, metrics, baseline)]
    if seconds is not None:
        lines += ["", f"Wall time: {seconds:.1f} s."]
    return "\n".join(lines) + "\n"


def print_table(cfg: RunConfig, metrics: dict, baseline: dict | None = None) -> None:
    """The same table in the terminal."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{cfg.learner.name} on {cfg.data.name}")
    for column in ["method", "scenario", *metric_names(cfg), "tasks"]:
        table.add_column(column, justify="left" if column in ("method", "scenario") else "right")
    for row in table_rows(cfg, metrics, baseline):
        table.add_row(*row)
    Console().print(table)
