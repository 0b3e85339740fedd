"""Fixtures of the fine-tuning tests: generated Potsdam-, iSAID-, Vaihingen- and LoveDA-like scenes
written in the real layouts; puts finetune_helpers on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from finetune_helpers import finetune_data  # noqa: E402


def generated_data(config: str):
    """A session fixture: a data directory holding the generated scenes of data=`config` (a _debug
    config) and their cache."""

    @pytest.fixture(scope="session")
    def data_dir(tmp_path_factory) -> Path:
        path = tmp_path_factory.mktemp(config)
        finetune_data(config, path).prepare_data()
        return path

    return data_dir


potsdam_dir = generated_data("potsdam_debug")
isaid_dir = generated_data("isaid_debug")
vaihingen_dir = generated_data("vaihingen_debug")
loveda_dir = generated_data("loveda_debug")
