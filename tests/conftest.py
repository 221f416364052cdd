"""Shared fixtures: small synthetic runs on CPU with no logger noise."""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from metarec.catalog import load_dataset
from metarec.config.load import load_config
from metarec.data.scenarios import ColdStartTasks

# A researcher's modules whose learners and datasets the registry-wide checks also cover:
# METAREC_PLUGINS=mypackage.learners pytest tests/test_learners.py
for _module in filter(None, os.environ.get("METAREC_PLUGINS", "").split(",")):
    importlib.import_module(_module)

# A synthetic dataset small enough for unit tests, big enough that adaptation shows.
SMALL = [
    "data.synthetic.n_users=300",
    "data.synthetic.n_items=200",
    "learner.meta_batch_size=16",
    "learner.eval_batch_size=64",
    "trainer.progress_bar=false",
]


def learner_overrides(name: str) -> list[str]:
    """``learner.name=NAME``, with ``item.text=replace`` for a learner of item text alone
    (``needs_item_text``: its config is refused without)."""
    from metarec.catalog import LEARNERS

    needs_text = LEARNERS.get(name).needs_item_text
    return [f"learner.name={name}", *(["item.text=replace"] if needs_text else [])]


# Test tensors are tiny: one thread avoids oversubscribing a busy 2-core machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        yield


@pytest.fixture(scope="session")
def small_tasks():
    """Tasks of the small synthetic dataset (built once per session)."""
    cfg = load_config(None, SMALL)
    return ColdStartTasks(load_dataset(cfg.data), cfg.data)


@pytest.fixture(scope="session")
def small_text_tasks():
    """The same tasks, items carrying (random, seeded) 8-dim text embeddings beside their
    categorical features, as ``item.text=join`` gives them."""
    cfg = load_config(None, SMALL)
    dataset = load_dataset(cfg.data)
    text = np.random.default_rng(0).normal(size=(len(dataset.items), 8)).astype(np.float32)
    dataset = replace(dataset, items=replace(dataset.items, text=text))
    return ColdStartTasks(dataset, cfg.data)


# A vocabulary for the tiny text model: enough words for the synthetic item texts.
TINY_WORDS = [*".,()-0123456789",
              *"abcdefghijklmnopqrstuvwxyz", "movie", "director", "actor", "starring",
              "genre", "rated", "film", "directed", "by", "a", "the", "drama", "comedy",
              "##s", "##ed", "##ing", "##er", "##a", "##e", "##i", "##o", "##r", "##n",
              "##t", "##y", "##l", "##m", "##0", "##1", "##2", "##3", "##4", "##5", "##6",
              "##7", "##8", "##9"]  # fmt: skip


def make_tiny_bert(folder: Path, words: list[str], seed: int = 0, hidden: int = 16) -> Path:
    """A random 2-layer BERT and its WordPiece tokenizer over ``words`` (after the special
    tokens), saved in ``folder`` offline from a config: stands in for a real text encoder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory):
    """A tiny random BERT over the synthetic item texts' words (see :func:`make_tiny_bert`)."""
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), TINY_WORDS)


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    """No network, no account: W&B writes only under tmp_path; the offline notice is new."""
    from metarec import tracking

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setattr(tracking, "_said_offline", False)


# --- references and short meta-training for the cold-start methods' learning tests ---------


def support_mean_error(tasks, power: int = 1) -> float:
    """Mean over tasks of each task's query error (absolute, or squared with ``power=2``)
    when predicting the user's mean support rating: the reference a content method must beat
    on new items."""
    query, support = tasks.query_mask.double(), tasks.support_mask.double()
    user_mean = (tasks.support_rating * support).sum(1) / support.sum(1)
    gap = (tasks.query_rating - user_mean.unsqueeze(1)).abs() ** power * query
    return float((gap.sum(1) / query.sum(1)).mean())


def global_mean_mae(tasks, scenario: str) -> float:
    """MAE of predicting the meta-training mean rating for every query of ``scenario``."""
    test = tasks.test[scenario]
    mean_rating = float(tasks.train_ratings()[1].mean())
    query = test.query_mask.double()
    gap = (test.query_rating - mean_rating).abs() * query
    return float((gap.sum(1) / query.sum(1)).mean())


def fit(learner, tasks, epochs: int = 1, steps: int = -1, eval_batch: int = 64):
    """``epochs`` (or ``steps`` meta-batches of 16) of Lightning meta-training on
    ``tasks.train`` (no validation, no files)."""
    import lightning as L

    from metarec.data.datamodule import ColdStartDataModule

    trainer = L.Trainer(
        max_epochs=epochs,
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        inference_mode=False,
    )
    trainer.fit(learner, datamodule=ColdStartDataModule(tasks, 16, eval_batch, seed=0))
    return learner


def scenario_mse(learner, tasks, scenario: str) -> float:
    """Mean over the tasks of ``scenario`` of each task's query MSE, ``learner`` as it is."""
    from metarec.learners.losses import masked_mse

    batch = tasks.test[scenario][torch.arange(len(tasks.test[scenario]))]
    with torch.no_grad():
        pred = learner(batch)
    return masked_mse(pred, batch["query_rating"], batch["query_mask"]).mean().item()


def assert_base_gets_only_its_own_gradient(learner, tasks, others) -> None:
    """A cold-start learner whose training loss sums the base model's own loss
    (``net.base.warm_loss``) and a loss of meta networks ``others`` that read the base
    detached: the base's gradient of the total is that of its own loss, and its own loss
    gives ``others`` none."""
    batch = tasks.train[torch.arange(8)]
    base = dict(learner.net.base.named_parameters())
    total = torch.autograd.grad(learner.training_loss(batch), list(base.values()))
    own = torch.autograd.grad(learner.net.base.warm_loss(batch, learner.loss), list(base.values()))
    for name, expected, actual in zip(base, own, total, strict=True):
        torch.testing.assert_close(actual, expected, msg=name)
    base_loss = learner.net.base.warm_loss(batch, learner.loss)
    assert all(g is None for g in torch.autograd.grad(base_loss, others, allow_unused=True))
