"""Structured config: every setting has one home, a dataclass field with a default and help."""

from __future__ import annotations

from dataclasses import dataclass, field


def _field(default, help: str):  # noqa: A002 - mirrors argparse's name
    """A dataclass field carrying its help text in the metadata."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class SyntheticConfig:
    """Sizes and noise of the embedded synthetic dataset."""

    n_users: int = _field(1000, "users in all states")
    n_items: int = _field(500, "items in all states")
    new_item_fraction: float = _field(0.35, "share of items that are 'new' (released last)")
    new_user_fraction: float = _field(0.2, "share of users that are 'new'")
    min_ratings: int = _field(20, "fewest ratings a user gives")
    max_ratings: int = _field(90, "most ratings a user gives")
    latent_dim: int = _field(4, "dimension of the hidden preference model")
    noise: float = _field(0.3, "std of the rating noise before rounding")


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how users become tasks (MeLU's protocol)."""

    name: str = _field("synthetic", "dataset: synthetic | melu-ml1m")
    root: str | None = _field(
        None, "data folder; default $METAREC_DATA_DIR, else the user cache folder"
    )
    seed: int = _field(0, "seed of the dataset, the task split and the validation users")
    min_ratings: int = _field(13, "keep users with at least this many ratings in a state")
    max_ratings: int = _field(100, "keep users with at most this many ratings in a state")
    query_size: int = _field(10, "query ratings per task; the rest are the support set")
    val_fraction: float = _field(0.1, "share of warm users held out for validation")
    test_fraction: float = _field(
        0.1, "share of warm users held out as the warm test scenario (never meta-trained on)"
    )
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """MeLU's network: feature embeddings, then fully connected ReLU layers, then the rating."""

    embedding_dim: int = _field(32, "size of each feature embedding")
    hidden: list[int] = _field([64, 64], "widths of the decision layers")


@dataclass
class LearnerConfig:
    """The meta-learner and its settings."""

    name: str = _field("maml", "learner: maml")
    inner_steps: int = _field(5, "gradient steps on the support set (local updates)")
    inner_lr: float = _field(0.05, "learning rate of the inner (local) updates")
    outer_lr: float = _field(1e-3, "Adam learning rate of the outer (global) update")
    first_order: bool = _field(False, "drop second-order terms of the meta-gradient")
    adapt: str = _field("all", "parameters adapted per task: all | decision (MeLU's local update)")
    meta_batch_size: int = _field(32, "tasks per outer step")
    eval_batch_size: int = _field(128, "tasks adapted at once during evaluation")


@dataclass
class TrainerConfig:
    """Settings passed to Lightning's Trainer."""

    max_epochs: int = _field(20, "passes over the meta-training tasks")
    accelerator: str = _field("cpu", "cpu | gpu | auto")
    devices: int = _field(1, "devices per node")
    precision: str = _field("32-true", "Lightning precision")
    limit_train_batches: float = _field(1.0, "fraction (or count) of meta-batches per epoch")
    progress_bar: bool = _field(True, "show progress bars")
    gradient_clip_val: float | None = _field(None, "clip the meta-gradient norm")


@dataclass
class RunConfig:
    """One run: data, model, learner, trainer, seed and where results go."""

    name: str = _field("run", "run name; the run folder is <output_dir>/<name>")
    seed: int = _field(0, "seed of initialisation and task order")
    output_dir: str = _field("runs", "parent folder of run folders")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
