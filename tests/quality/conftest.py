"""Fixtures of the label-quality tests: a generated HRSC2016 dataset (with its scenes), and a
function that labels a source on the CPU and scores the result."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import lightning as L
import pytest

from samrs.classes import subset_classes
from samrs.labeling.job import run_labeling
from samrs.labeling.quality.evaluate import evaluate_subset
from samrs.scenes.formats import format_scenes, write_format
from samrs.sources.hrsc2016 import Hrsc2016Source

# Scenes i % 4 == 2, 3 are HRSC2016's segmented test images: 4 of these 8.
HRSC_SCENES = dict(count=8, size=128, seed=7, num_objects=(3, 6))


@pytest.fixture(scope="session")
def hrsc_root(tmp_path_factory) -> Path:
    """A generated HRSC2016 dataset (images, XML, segmentation PNGs of the test split)."""
    return write_format("hrsc2016", tmp_path_factory.mktemp("hrsc2016"), **HRSC_SCENES)


@pytest.fixture(scope="session")
def hrsc_scenes() -> dict:
    """name -> Scene behind hrsc_root, with the exact masks."""
    return {scene.name: scene for scene in format_scenes("hrsc2016", **HRSC_SCENES)}


@pytest.fixture
def hrsc_source(hrsc_root) -> Hrsc2016Source:
    return Hrsc2016Source(hrsc_root, subset_classes("hrsc2016"), split="test")


@pytest.fixture(scope="session")
def label_and_score() -> Callable[..., dict]:
    """label_and_score(source, labeler, out, **run_labeling options): label on one CPU process,
    then score; returns quality.json's content."""

    def run(source, labeler, out: Path, **options) -> dict:
        trainer = functools.partial(L.Trainer, accelerator="cpu", devices=1, enable_model_summary=False)
        run_labeling(source, labeler, out, progress=False, num_workers=0, make_trainer=trainer, **options)
        return evaluate_subset(out, source)

    return run
