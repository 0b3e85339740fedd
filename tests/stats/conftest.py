"""Fixtures of the stats tests: a hand-made subset with overlaps and mixed sizes, the stats config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from samrs.classes import subset_classes
from samrs.labeling.base import InstanceMask
from samrs.labeling.writer import SubsetWriter
from samrs.utils.hydra import config_dir


def _rect(h: int, w: int) -> np.ndarray:
    return np.ones((h, w), dtype=bool)


def write_overlap_subset(root: Path, finalize: bool = True) -> Path:
    """Four sota images of three sizes: overlapping instances (a vehicle on a bridge, the bridge
    painted under it), one image without instances, one instance as large as 40x40."""
    classes = subset_classes("sota")
    writer = SubsetWriter(root, classes, val_fraction=0.25)
    rng = np.random.default_rng(0)
    images = {
        "a": ((60, 80), [InstanceMask(_rect(10, 40), 5, 20, 0, 3), InstanceMask(_rect(4, 6), 10, 22, 1, 9)]),
        "b": ((60, 80), [InstanceMask(_rect(40, 40), 0, 0, 0, 16), InstanceMask(_rect(3, 3), 50, 50, 1, 9),
                         InstanceMask(_rect(2, 9), 60, 5, 2, 0)]),
        "c": ((32, 48), []),
        "d": ((32, 48), [InstanceMask(_rect(20, 20), 2, 2, 0, 14), InstanceMask(_rect(8, 8), 6, 6, 1, 5),
                         InstanceMask(_rect(1, 1), 40, 30, 2, 9)]),
    }
    for name, ((h, w), instances) in images.items():
        writer.write(name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), instances)
    if finalize:
        writer.finalize({"source": "test"})
    return root


@pytest.fixture()
def make_overlap_subset():
    return write_overlap_subset


@pytest.fixture()
def overlap_subset(tmp_path) -> Path:
    return write_overlap_subset(tmp_path / "overlap")


@pytest.fixture(scope="session")
def stats_cfg():
    """Compose conf/stats.yaml with overrides (no Hydra run: output_dir must be given)."""

    def make(*overrides: str):
        with initialize_config_dir(config_dir(), version_base="1.3"):
            return compose("stats", overrides=["progress=false", *overrides])

    return make
