"""Loggers that print once in multi-process runs (rank zero only)."""

from __future__ import annotations

import logging

# lightning_utilities holds the same rank_zero_only that Lightning configures, without importing
# Lightning itself (10 s): jobs that do not train start fast.
from lightning_utilities.core.rank_zero import rank_zero_only


def get_logger(name: str) -> logging.Logger:
    """A standard logger whose info/warning/error calls run on rank zero only."""
    logger = logging.getLogger(name)
    for level in ("debug", "info", "warning", "error", "exception", "fatal", "critical"):
        setattr(logger, level, rank_zero_only(getattr(logger, level)))
    return logger
