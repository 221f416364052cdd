"""Structured config: every setting has one home, a dataclass field with a default and help."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from metarec.config.domain import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    CountOrFraction,
    Range,
    setting,
)
from metarec.config.text import EncoderConfig, ItemConfig

# The learner a config gets when it names none (``learner.name``).
DEFAULT_LEARNER = "maml"


# The dataset a config gets when it names none (``data.name``).
DEFAULT_DATASET = "synthetic"


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how users become tasks (MeLU's protocol). Each
    registered dataset extends it with its own settings (``data.<section>.*``)."""

    name: str = setting(
        DEFAULT_DATASET, "registered dataset (`metarec datasets` lists them and their settings)"
    )
    root: str | None = setting(
        None, "data folder; default $METAREC_DATA_DIR/<name>, else the user cache folder"
    )
    seed: int = setting(
        0, "seed of the dataset, the task split and the validation users", domain=NON_NEGATIVE
    )
    min_ratings: int = setting(
        13, "keep users with at least this many ratings in a state", domain=AT_LEAST_ONE
    )
    max_ratings: int = setting(
        100, "keep users with at most this many ratings in a state", domain=AT_LEAST_ONE
    )
    query_size: int = setting(
        10, "query ratings per task; the rest are the support set", domain=AT_LEAST_ONE
    )
    val_fraction: float = setting(
        0.1,
        "share of warm users held out for validation (the epoch and settings are picked on them)",
        domain=OPEN_FRACTION,
    )
    test_fraction: float = setting(
        0.1,
        "share of warm users held out as the warm test scenario, never meta-trained on "
        "(task.warm heldout; seen leaves them unused, warmup meta-trains on them too)",
        domain=FRACTION,
    )

    def __post_init__(self) -> None:
        if self.min_ratings > self.max_ratings:
            raise ValueError(
                f"key 'data.min_ratings': {self.min_ratings} is above data.max_ratings "
                f"({self.max_ratings}), so no user would be kept"
            )
        fractions = (self.val_fraction, self.test_fraction)
        if all(FRACTION.allows(f) for f in fractions) and sum(fractions) >= 1:
            raise ValueError(
                f"key 'data.val_fraction': {self.val_fraction} + data.test_fraction "
                f"{self.test_fraction} leave no warm user to meta-train on; keep their sum below 1"
            )


@dataclass
class TaskConfig:
    """What a task is and what it predicts."""

    unit: str = setting(
        "user",
        "a task per user (support: items they rated) or per item (support: users who rated it)",
        choices=("user", "item"),
    )
    target: str = setting(
        "rating",
        "predict the rating (MSE) or whether it is a like, rating >= like_threshold (BCE)",
        choices=("rating", "like"),
    )
    like_threshold: float = setting(4.0, "a rating at or above this is a like")
    support_size: int = setting(
        10,
        "task.unit=item: users in an item's support set (its query: query_size others)",
        domain=AT_LEAST_ONE,
    )
    warm: list[str] = setting(
        ["heldout"],
        "warm protocols scored: heldout (scenario 'warm': warm users never meta-trained on), "
        "seen (MeLU's: 'warm_seen', the meta-training users' own tasks, in-sample; the same "
        "training as heldout), warmup (MetaHIN's: 'warm_warmup', each meta-training user's "
        "query_size held-out ratings, the rest their support set; training never reads them)",
    )
    cold: bool = setting(True, "score the cold scenarios (new users, new items, both new)")
    full_ranking: bool = setting(
        False,
        "next-item data (amazon-unisrec): also rank each test target against every item but "
        "the user's history (full_hr@10, full_ndcg@10, full_mrr); slow on a CPU",
    )

    WARM_PROTOCOLS = ("heldout", "seen", "warmup")

    def __post_init__(self) -> None:
        unknown = [name for name in self.warm if name not in self.WARM_PROTOCOLS]
        if unknown or not self.warm:
            raise ValueError(
                f"key 'task.warm': {unknown or 'an empty list'} is not a list of "
                f"{', '.join(self.WARM_PROTOCOLS)}"
            )
        if "warmup" in self.warm and len(self.warm) > 1:
            raise ValueError(
                "key 'task.warm': warmup meta-trains on fewer ratings than heldout and seen, "
                "so it cannot be scored in the same run; use task.warm=[warmup] alone"
            )
        if self.unit == "item" and list(self.warm) != ["heldout"]:
            raise ValueError("key 'task.warm': item tasks (task.unit=item) score heldout only")


@dataclass
class ModelConfig:
    """MeLU's network: feature embeddings, then fully connected ReLU layers, then the rating."""

    embedding_dim: int = setting(32, "size of each feature embedding", domain=AT_LEAST_ONE)
    hidden: list[int] = setting([64, 64], "widths of the decision layers", domain=AT_LEAST_ONE)


@dataclass
class LearnerConfig:
    """Settings every learner has; each learner extends it with its own ``Settings`` dataclass."""

    name: str = setting(DEFAULT_LEARNER, "registered learner name (`metarec learners` lists them)")
    outer_lr: float = setting(
        1e-3, "Adam learning rate of the outer (global) update", domain=POSITIVE
    )
    meta_batch_size: int = setting(32, "tasks per outer step", domain=AT_LEAST_ONE)
    eval_batch_size: int = setting(
        128, "tasks adapted at once during evaluation", domain=AT_LEAST_ONE
    )
    residual: bool = setting(
        False,
        "learn what the shrunk bias baseline misses: each task's support and query ratings "
        "become residuals of item mean + the user's shrunk support offset (pseudo-counts "
        "picked on validation users), whose predictions are added back; ratings only",
    )


@dataclass
class TrainerConfig:
    """Settings passed to Lightning's Trainer."""

    max_epochs: int = setting(
        20,
        "passes over the meta-training tasks (0: evaluate the initial weights)",
        domain=NON_NEGATIVE,
    )
    accelerator: str = setting(
        "cpu", "Lightning accelerator", choices=("cpu", "gpu", "cuda", "mps", "auto")
    )
    devices: int = setting(
        1,
        "devices (processes) per node; learner.meta_batch_size is shared among all of them",
        domain=Range(1, also=(-1,)),
    )
    num_nodes: int = setting(
        1, "machines; each runs trainer.devices processes", domain=AT_LEAST_ONE
    )
    strategy: str = setting(
        "auto",
        "Lightning strategy: auto (ddp for several devices) | ddp | ddp_spawn | fsdp (shards a "
        "large tuned text encoder) | any name Lightning's StrategyRegistry knows",
    )
    precision: str = setting("32-true", "Lightning precision: 32-true | bf16-mixed | 64-true ...")
    limit_train_batches: Union[int, float] = setting(  # noqa: UP007 - omegaconf's Union
        1.0,
        "meta-batches per epoch: a fraction (a decimal, 1.0 = all) or a count (a whole number)",
        domain=CountOrFraction(),
    )
    progress_bar: bool = setting(True, "show progress bars")
    log_every_n_steps: int = setting(
        10, "meta-steps between training-loss log rows", domain=AT_LEAST_ONE
    )
    log_lines_every: int = setting(
        50,
        "meta-steps between plain progress lines (and one per validation) printed when stdout "
        "is not a terminal or the progress bar is off; 0 turns them off",
        domain=NON_NEGATIVE,
    )
    gradient_clip_val: float | None = setting(None, "clip the meta-gradient norm", domain=POSITIVE)


@dataclass
class TrackingConfig:
    """Weights & Biases logging beside metarec's own CSV/JSON files (which are always written)."""

    wandb: bool = setting(False, "log the run to Weights & Biases (Lightning's WandbLogger)")
    project: str = setting("metarec", "W&B project")
    entity: str | None = setting(None, "W&B team or user; default: the account's default")
    group: str | None = setting(None, "W&B run group, e.g. one per sweep or experiment")
    tags: list[str] = setting([], "W&B run tags")
    mode: str = setting(
        "online",
        "online: sync as it runs (offline, said once, without an API key); offline: write "
        "files to sync later with `wandb sync`; disabled: no W&B at all",
        choices=("online", "offline", "disabled"),
    )
    dir: str = setting(".", "folder, relative to the run folder, where W&B writes wandb/")


@dataclass
class RunConfig:
    """One run: data, model, learner, trainer, seed and where results go."""

    name: str | None = setting(
        None,
        "run name; the run folder is <output_dir>/<name>-<timestamp>; default: the dataset, "
        "the learner, the experiment file and the overrides that changed them",
    )
    seed: int = setting(0, "seed of initialisation and task order", domain=NON_NEGATIVE)
    output_dir: str = setting("runs", "parent folder of run folders")
    resume: str | None = setting(
        None,
        "continue an interrupted run: true (or last) resumes the newest <output_dir>/<name>-* "
        "folder holding checkpoints/last.ckpt; or a checkpoint file or run folder",
    )
    plugins: list[str] = setting(
        [],
        "modules imported before the config is checked: a researcher's learners and datasets "
        "(installed packages are found through their metarec.learners / metarec.datasets "
        "entry points without this)",
    )
    # Typed by the chosen dataset's own Settings dataclass when the config is loaded.
    data: Any = field(default_factory=lambda: {"name": DEFAULT_DATASET})
    task: TaskConfig = field(default_factory=TaskConfig)
    item: ItemConfig = field(default_factory=ItemConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # Typed by the chosen learner's own Settings dataclass when the config is loaded.
    learner: Any = field(default_factory=lambda: {"name": DEFAULT_LEARNER})
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
