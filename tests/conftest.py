"""Shared fixtures: the real sample files (skipped when absent), small generated data, paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _samples_root() -> Path:
    env = os.environ.get("SAMRS_SAMPLES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """../shared/samples (or $SAMRS_SAMPLES): small real dataset files; the test skips without it."""
    root = _samples_root()
    if not root.is_dir():
        pytest.skip(f"real samples not found at {root} (set SAMRS_SAMPLES)")
    return root


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def generated_subsets(tmp_path_factory) -> dict[str, Path]:
    """Small generated SAMRS-format subsets (12 scenes of 64 px each) for sota, sior and fast."""
    from samrs.scenes.subset import write_generated_subset

    root = tmp_path_factory.mktemp("generated")
    return {
        name: write_generated_subset(root / name, name, count=12, size=64, num_objects=(2, 5), seed=3,
                                     val_fraction=0.25, progress=False)
        for name in ("sota", "sior", "fast")
    }
