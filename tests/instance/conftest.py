"""Fixtures of the instance task's tests: generated subsets (exact instances), their instance data."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs.data.instances import InstanceDataModule


def instance_data(subsets: dict[str, Path], cache_dir: Path | None = None, **kwargs) -> InstanceDataModule:
    """An InstanceDataModule over generated subsets, no workers, no flips unless asked."""
    settings = {"batch_size": 6, "val_batch_size": 2, "num_workers": 0, "pin_memory": False,
                "cache": {"enabled": cache_dir is not None, "dir": str(cache_dir) if cache_dir else None},
                "train_transform": {"crop_size": 48}, "val_transform": {"crop_size": 64}, **kwargs}
    return InstanceDataModule(subsets={k: {"root": str(v), "classes": k} for k, v in subsets.items()}, **settings)


@pytest.fixture
def make_data():
    return instance_data
