"""Helpers of the label-job tests, importable by name (conftest puts this folder on sys.path;
subprocess runs get it through PYTHONPATH): a generated DOTA dataset's source, a CPU job runner,
expected tiles, and a labeler that records what it labeled."""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import lightning as L

from samrs.classes import subset_classes
from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.sources.dota import DotaSource
from samrs.sources.tiling import Tiling

HERE = Path(__file__).resolve().parent
# Six 300 x 500 scenes (and one without objects, see conftest) cut into 256-px tiles with a 56-px
# gap: 6 tiles each, objects cut by tiles.
DOTA_SCENES = dict(count=6, size=(300, 500), seed=2, num_objects=(3, 6))
TILING = Tiling(size=256, gap=56, min_visible=0.3)
# The same tiling as command-line overrides.
TILING_ARGS = ["tiling.size=256", "tiling.gap=56", "tiling.min_visible=0.3"]


class RecordingLabeler(PolygonFillLabeler):
    """polygon_fill that appends "<rank> <image name>" to `log` for every image it labels and
    sleeps `delay` seconds per image (so a test can kill a run mid-way)."""

    def __init__(self, log: str, delay: float = 0.0) -> None:
        self.log = log
        self.delay = delay

    def label(self, images, records):
        time.sleep(self.delay * len(images))
        rank = os.environ.get("LOCAL_RANK", "0")
        with open(self.log, "a") as f:  # O_APPEND: lines of several processes do not interleave
            f.write("".join(f"{rank} {r.name}\n" for r in records))
        return super().label(images, records)


def recorded(log: Path) -> list[tuple[str, str]]:
    """(rank, image name) lines a RecordingLabeler wrote."""
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.is_file() else []


def dota_source(root: Path, split: str | None = "train") -> DotaSource:
    return DotaSource(root, subset_classes("sota"), split=split)


def cpu_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, enable_model_summary=False, **kwargs)


def run_job(source, out: Path, labeler=None, **options) -> dict:
    """run_labeling on one CPU process without workers; returns meta.json."""
    options.setdefault("tiling", TILING)
    options.setdefault("progress", False)
    return run_labeling(source, labeler or PolygonFillLabeler(), out, make_trainer=functools.partial(cpu_trainer),
                        **options)


def expected_tiles(source, tiling: Tiling) -> dict:
    """name -> tile record, for every tile of every readable source image."""
    def ignore(problem):  # the job's report is checked by the tests themselves
        pass

    out = {}
    for item in source.items(ignore):
        record = source.read(item, ignore)
        if record is not None:
            out.update((t.name, t) for t in tiling.tile(record))
    return out


def instances(out: Path) -> dict:
    return json.loads((out / "instances.json").read_text())


def file_bytes(folder: Path) -> dict[str, bytes]:
    """relative path -> content of every file under `folder`, hidden bookkeeping included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} if folder.is_dir() else {}
