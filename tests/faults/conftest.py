"""Fixtures of the fault and user-error tests (issue 18); puts fault_helpers on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_helpers import environment  # noqa: E402

from samrs.scenes.formats import write_format  # noqa: E402


@pytest.fixture(scope="session")
def dota_root(tmp_path_factory) -> Path:
    """Six small generated DOTA scenes (DOTA/train/images, labelTxt)."""
    return write_format("dota", tmp_path_factory.mktemp("dota"), count=6, size=96, seed=4, num_objects=(2, 4)) / "DOTA"


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return environment(tmp_path)
