"""Fixtures of the fine-tuning tests: generated Potsdam-like and iSAID-like scenes written in the real
layouts; puts finetune_helpers on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from finetune_helpers import finetune_data  # noqa: E402


@pytest.fixture(scope="session")
def potsdam_dir(tmp_path_factory) -> Path:
    """A data directory holding generated Potsdam-like scenes (data=potsdam_debug) and their cache."""
    data_dir = tmp_path_factory.mktemp("potsdam_data")
    finetune_data("potsdam_debug", data_dir).prepare_data()
    return data_dir


@pytest.fixture(scope="session")
def isaid_dir(tmp_path_factory) -> Path:
    """A data directory holding generated iSAID-like scenes (data=isaid_debug) and their cache."""
    data_dir = tmp_path_factory.mktemp("isaid_data")
    finetune_data("isaid_debug", data_dir).prepare_data()
    return data_dir
