"""Weights & Biases logging: Lightning's WandbLogger set up from ``cfg.tracking``.

Without an API key (``WANDB_API_KEY`` or a ``~/.netrc`` entry for the W&B host) or without
a network, an online run becomes an offline one, said once per process; its files sit in the
run folder and ``wandb sync <run folder>/wandb/offline-run-*`` uploads them later. metarec's
own CSV/JSON files are written either way: W&B's offline files are binary.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from metarec.config.load import to_yaml
from metarec.config.schema import RunConfig
from metarec.errors import ConfigError
from metarec.io import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.wandb.ai"
CONFIG_FILE = "metarec-config.yaml"  # the run's config.yaml, saved among the W&B run's files
_said_offline = False  # the offline notice is given once per process


def _host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)).hostname or "api.wandb.ai"


def has_credentials() -> bool:
    """Whether W&B would find an API key: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        entry = netrc.netrc(os.environ.get("NETRC")).authenticators(_host())
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def reachable(timeout: float = 2.0) -> bool:
    """Whether the W&B host accepts a TCP connection (called only when a key is there)."""
    try:
        with socket.create_connection((_host(), 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(requested: str) -> str:
    """The W&B mode a run uses: ``disabled`` if asked, else ``WANDB_MODE`` from the
    environment, else ``requested``; ``online`` without a key or a network becomes
    ``offline``, with one notice per process."""
    global _said_offline
    mode = requested if requested == "disabled" else os.environ.get("WANDB_MODE") or requested
    if mode == "dryrun":  # W&B's older name for offline
        mode = "offline"
    if mode not in ("online", "offline", "disabled"):
        raise ConfigError(f"WANDB_MODE='{mode}' is not one of online, offline, disabled")
    if mode != "online":
        return mode
    reason = None
    if not has_credentials():
        reason = f"no W&B API key (WANDB_API_KEY or ~/.netrc for {_host()})"
    elif not reachable():
        reason = f"{_host()} cannot be reached"
    if reason is None:
        return "online"
    if not _said_offline:
        log.warning(
            "%s: W&B runs offline (WANDB_MODE=offline); upload later with "
            "`wandb sync <run folder>/wandb/offline-run-*`",
            reason,
        )
        _said_offline = True
    return "offline"


def config_dict(cfg: RunConfig) -> dict:
    """The resolved config as plain nested dicts and lists (what W&B's config shows)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def make_wandb_logger(cfg: RunConfig, run_dir: Path):
    """A ``WandbLogger`` for the run in ``run_dir``, or None when tracking is off or disabled.

    W&B writes its files under ``run_dir / cfg.tracking.dir / "wandb"``; the run's config
    YAML is saved among the run's files (``metarec-config.yaml``) so a synced run carries it.
    """
    tracking = cfg.tracking
    if not tracking.wandb:
        return None
    mode = resolve_mode(tracking.mode)
    if mode == "disabled":
        return None
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as err:  # pragma: no cover - lightning always has it
        raise ConfigError(f"key 'tracking.wandb': {err}") from err
    try:
        import wandb  # noqa: F401 - WandbLogger imports it lazily; fail here, clearly
    except ImportError as err:
        raise ConfigError(
            "key 'tracking.wandb': wandb is not installed (pip install 'metarec[wandb]')"
        ) from err
    save_dir = run_dir / tracking.dir
    save_dir.mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        name=run_dir.name,
        save_dir=str(save_dir),
        project=tracking.project,
        entity=tracking.entity,
        group=tracking.group,
        tags=list(tracking.tags),
        mode=mode,
        config=config_dict(cfg),
    )
    # Files in the W&B run's folder are uploaded with it; W&B's own config.yaml is another file.
    atomic_write_text(Path(logger.experiment.dir) / CONFIG_FILE, to_yaml(cfg))
    return logger


def finish(logger, summary: dict[str, float]) -> None:
    """Put the run's final metrics (``summary.json``) in the W&B summary and close the run."""
    if logger is None:
        return
    logger.experiment.summary.update(summary)
    logger.experiment.finish()
