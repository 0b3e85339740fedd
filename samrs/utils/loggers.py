"""Experiment loggers with safe defaults: wandb offline unless the user is logged in."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_logged_in() -> bool:
    """True when wandb has credentials (WANDB_API_KEY or a netrc entry for its host)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(mode: str = "auto", **kwargs: Any) -> WandbLogger:
    """A Lightning WandbLogger; mode "auto" is online when logged in and offline otherwise.

    wandb never blocks on a login prompt: WANDB_MODE / mode decide, and offline runs can be
    uploaded later with `wandb sync <run dir>`. With `id` set, the run with that id continues
    (resume="allow").
    """
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "auto":
        mode = "online" if wandb_logged_in() else "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    if kwargs.get("id"):
        kwargs.setdefault("resume", "allow")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    os.makedirs(kwargs.get("save_dir", "."), exist_ok=True)
    return WandbLogger(mode=mode, **kwargs)


def previous_wandb_id(output_dir: str | os.PathLike) -> str | None:
    """The id of the latest wandb run in a run directory (wandb/latest-run -> [offline-]run-<time>-<id>)."""
    latest = Path(output_dir) / "wandb" / "latest-run"
    return latest.resolve().name.rsplit("-", 1)[-1] if latest.exists() else None
