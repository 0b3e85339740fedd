"""Experiment loggers with safe defaults: wandb offline unless the user is logged in, and one CSV
per run that a resumed run continues."""

from __future__ import annotations

import csv
import netrc
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf


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


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSVLogger that, given `resume_step`, continues the run directory's latest
    `version_N/metrics.csv` instead of starting `version_N+1`: rows logged before step
    `resume_step` stay, the later ones (logged by the interrupted run after its checkpoint, and
    logged again by the resumed run) are dropped. Without `resume_step` it is Lightning's logger."""

    def __init__(self, save_dir: str, name: str = "csv", version: int | str | None = None, prefix: str = "",
                 flush_logs_every_n_steps: int = 100, resume_step: int | None = None) -> None:
        self.resume_step = resume_step
        if resume_step is not None and version is None:
            version = latest_version(Path(save_dir) / name)
        super().__init__(save_dir, name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = (ExperimentWriter(self.log_dir) if self.resume_step is None
                                else ContinuedWriter(self.log_dir, self.resume_step))
        return self._experiment


class ContinuedWriter(ExperimentWriter):
    """Keeps the rows of an existing metrics.csv logged before `resume_step` and appends after them."""

    def __init__(self, log_dir: str, resume_step: int) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes the file
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), [r for r in reader if _step(r) < self.resume_step]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)


def _step(row: dict[str, str]) -> float:
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


def latest_version(root: Path) -> int | None:
    """The highest N of root/version_N, None when there is none."""
    found = [int(m.group(1)) for p in root.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    return max(found) if found else None


def logged_step(ckpt_path: str | Path) -> int:
    """The first logger step of a run resumed from `ckpt_path`. Lightning logs batch k's values (and
    a validation after it) at step k and saves checkpoints before counting the batch, so the
    checkpoint's count is the step of the last rows it covers; the resumed run logs from the next."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    loop = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    stepped = loop.get("_batches_that_stepped")
    return int(stepped) + 1 if stepped is not None else int(checkpoint.get("global_step", 0))


def continue_csv_log(cfg: DictConfig, ckpt_path: str | Path) -> None:
    """On resume from this run directory's checkpoint, the CSV logger continues its latest CSV."""
    csv_cfg = OmegaConf.select(cfg, "logger.csv")
    if csv_cfg is None or "resume_step" not in csv_cfg or csv_cfg.get("version") is not None:
        return
    if Path(ckpt_path).resolve().is_relative_to(Path(cfg.paths.output_dir).resolve()):
        csv_cfg.resume_step = logged_step(ckpt_path)
