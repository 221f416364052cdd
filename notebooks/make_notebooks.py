"""Writes the two notebooks from the cells below (no outputs): `python notebooks/make_notebooks.py`.

Edit the cells here, not the .ipynb files, so that the notebooks stay reviewable as code.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

# Small enough to run in well under a minute on two CPU cores.
TINY = """[
    "data.synthetic.n_users=200",
    "data.synthetic.n_items=120",
    "learner.meta_batch_size=8",
    "learner.eval_batch_size=64",
    "trainer.max_epochs=2",
    "trainer.progress_bar=false",
    f"output_dir={OUTPUT}",
]"""

SETUP = f"""import logging, os, tempfile, warnings
from pathlib import Path

logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
# Run folders go to METAREC_NOTEBOOK_OUT (the tests set it) or a temporary folder.
OUTPUT = Path(os.environ.get("METAREC_NOTEBOOK_OUT") or tempfile.mkdtemp(prefix="metarec-"))
TINY = {TINY}"""

QUICKSTART = [
    new_markdown_cell(
        "# metarec quickstart\n\n"
        "Meta-train MAML on the embedded synthetic dataset, evaluate it on the four cold-start "
        "scenarios (warm, new user, new item, new user and item) beside the no-learning bias "
        "baseline, and plot the result. Runs on a CPU in under a minute; raise "
        "`trainer.max_epochs` and the dataset sizes for real numbers."
    ),
    new_code_cell(SETUP),
    new_markdown_cell(
        "A config is the schema's defaults, then an experiment file, then `key=value` "
        "overrides, exactly as `metarec train` builds it."
    ),
    new_code_cell(
        "from metarec.config.load import load_config\n"
        "from metarec.pipeline import train\n\n"
        'cfg = load_config("../experiments/synthetic/maml.yaml", TINY)\n'
        "result = train(cfg)\n"
        "result.run_dir"
    ),
    new_markdown_cell("The run folder holds the same table `metarec train` prints:"),
    new_code_cell(
        "from IPython.display import Markdown\n\n"
        'Markdown((result.run_dir / "table.md").read_text())'
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n\n"
        "scenarios = list(result.metrics)\n"
        "x = range(len(scenarios))\n"
        "fig, ax = plt.subplots(figsize=(6, 3))\n"
        'ax.bar([i - 0.2 for i in x], [result.metrics[s]["mae"] for s in scenarios], 0.4, '
        'label="maml")\n'
        'ax.bar([i + 0.2 for i in x], [result.baseline[s]["mae"] for s in scenarios], 0.4, '
        'label="bias baseline")\n'
        'ax.set_xticks(list(x), scenarios)\nax.set_ylabel("MAE (lower is better)")\n'
        "ax.legend()\nplt.show()"
    ),
    new_code_cell(
        "import json\n\n"
        'metrics = json.loads((result.run_dir / "metrics.json").read_text())\n'
        'assert set(metrics) == {"warm", "new_user", "new_item", "new_user_item"}\n'
        'assert all(0 < m["mae"] < 4 for m in metrics.values())'
    ),
]

NEW_LEARNER = [
    new_markdown_cell(
        "# Write and register a new meta-learner\n\n"
        "A learner is a `MetaLearner` subclass with two methods: `adapt(support)` returns "
        "whatever it learns from a task's support set, `predict(state, query)` the query "
        "ratings. Register it under a name and every metarec command can use it. Here: the "
        "global network plus the task's mean support residual, shrunk toward zero."
    ),
    new_code_cell(SETUP),
    new_code_cell(
        "from dataclasses import dataclass\n\n"
        "from metarec.config.schema import LearnerConfig\n"
        "from metarec.config.domain import setting\n"
        "from metarec.catalog import LEARNERS\nfrom metarec.learners.base import MetaLearner\n\n\n"
        "@dataclass\n"
        "class OffsetSettings(LearnerConfig):\n"
        '    shrink: float = setting(5.0, "pseudo-count pulling the offset toward 0")\n\n\n'
        'if "offset" in LEARNERS:  # re-running this cell\n'
        '    LEARNERS.unregister("offset")\n\n\n'
        '@LEARNERS.register("offset")\n'
        "class Offset(MetaLearner):\n"
        '    """Global network + the task\'s shrunk mean support residual."""\n\n'
        "    Settings = OffsetSettings\n\n"
        "    def adapt(self, support):\n"
        '        predicted = self.net(support["user"][:, None], support["item"])\n'
        '        residual = (support["rating"] - predicted) * support["mask"]\n'
        '        return residual.sum(1) / (support["mask"].sum(1) + self.cfg.shrink)\n\n'
        "    def predict(self, offset, query):\n"
        '        return self.net(query["user"][:, None], query["item"]) + offset[:, None]'
    ),
    new_markdown_cell(
        "Train it and a built-in learner (MAML) on the same config: the tasks depend only on "
        "the data and task settings, so both are evaluated on identical tasks."
    ),
    new_code_cell(
        "from metarec.config.load import load_config\n"
        "from metarec.pipeline import train\n\n"
        "results = {}\n"
        'for name in ("offset", "maml"):\n'
        '    overrides = [*TINY, f"learner.name={name}", f"name={name}"]\n'
        '    cfg = load_config("../experiments/synthetic/maml.yaml", overrides)\n'
        "    results[name] = train(cfg)"
    ),
    new_code_cell(
        "rows = {name: {s: m['mae'] for s, m in r.metrics.items()}\n"
        "        for name, r in results.items()}\n"
        'rows["bias baseline"] = {s: m["mae"] for s, m in results["maml"].baseline.items()}\n'
        "scenarios = list(rows['maml'])\n"
        'print(f"{\'MAE\':<14}" + "".join(f"{s:>15}" for s in scenarios))\n'
        "for name, values in rows.items():\n"
        '    print(f"{name:<14}" + "".join(f"{values[s]:>15.4f}" for s in scenarios))'
    ),
    new_code_cell(
        'tasks = {name: r.metrics["new_user"]["n_tasks"] for name, r in results.items()}\n'
        'assert tasks["offset"] == tasks["maml"]  # the same new-user tasks for both'
    ),
]


def write(name: str, cells: list) -> Path:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    notebook.metadata["language_info"] = {"name": "python"}
    path = HERE / name
    nbformat.write(notebook, path)
    return path


if __name__ == "__main__":
    print(write("01_quickstart.ipynb", QUICKSTART))
    print(write("02_new_meta_learner.ipynb", NEW_LEARNER))
