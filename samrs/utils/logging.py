"""Loggers that print once in multi-process runs (rank zero only)."""

from __future__ import annotations

import logging
import os

# lightning_utilities holds the same rank_zero_only that Lightning configures, without importing
# Lightning itself (10 s): jobs that do not train start fast.
from lightning_utilities.core.rank_zero import rank_zero_only

# Lightning sets the rank when it is imported and when a strategy starts; until then take it from
# the launcher's environment.
if getattr(rank_zero_only, "rank", None) is None:
    rank_zero_only.rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", os.environ.get("SLURM_PROCID", 0))))


def get_logger(name: str) -> logging.Logger:
    """A standard logger whose info/warning/error calls run on rank zero only."""
    logger = logging.getLogger(name)
    for level in ("debug", "info", "warning", "error", "exception", "fatal", "critical"):
        setattr(logger, level, rank_zero_only(getattr(logger, level)))
    return logger
