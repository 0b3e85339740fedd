"""Speed of the label job's own parts: tiling and the predict loop's data loading.

python scripts/bench_label.py [--objects 2000] [--scenes 6] [--workers 2]

1. Tiling a 4000 x 4000 DOTA-like scene with `--objects` rotated boxes into 1024 / 200 tiles:
   `Tiling.tile` (boxes sorted out by their extents with numpy, only the boxes crossing a tile
   border clipped, in one vectorised shapely call per tile) against the baseline of clipping every
   box against every tile with `samrs.geometry.clip_polygon`.
2. The whole job (polygon_fill) on `--scenes` generated 1500 x 1500 DOTA scenes tiled 1024 / 200:
   images/s and objects/s with DataLoader workers reading, tiling and decoding while the main
   process labels and writes, against no workers (baseline).
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np

from samrs.classes import subset_classes
from samrs.geometry import clip_polygon, hbox_of, rotated_rect
from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.scenes.formats import write_format
from samrs.sources.dota import DotaSource
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.sources.tiling import Tiling


def dense_scene(count: int, side: int = 4000, seed: int = 0) -> ImageRecord:
    """Vehicles (8-40 px) and a few fields (150-600 px), rotated, anywhere in the scene."""
    rng = np.random.default_rng(seed)
    objects = []
    for i in range(count):
        length = rng.uniform(150, 600) if i % 100 == 0 else rng.uniform(8, 40)
        corners = rotated_rect(*rng.uniform(50, side - 50, 2), length, length * rng.uniform(0.3, 0.8),
                               rng.uniform(0, np.pi))
        objects.append(ObjectRecord("small-vehicle", 9, corners, hbox_of(corners)))
    return ImageRecord("dense", None, side, side, objects)


def clip_every_box(record: ImageRecord, tiling: Tiling) -> int:
    """Baseline: each box against each tile with clip_polygon; returns the objects kept."""
    kept = 0
    for x, y in tiling.windows(record.width, record.height):
        for obj in record.objects:
            polygon = clip_polygon(obj.corners, x, y, x + tiling.size, y + tiling.size)
            kept += polygon is not None
    return kept


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def bench_tiling(objects: int) -> None:
    record = dense_scene(objects)
    tiling = Tiling(size=1024, gap=200, min_visible=0.0)
    base, kept_base = best_of(lambda: clip_every_box(record, tiling), 1)
    ours, tiles = best_of(lambda: tiling.tile(record), 3)
    kept = sum(len(t.objects) for t in tiles)
    assert kept == kept_base, (kept, kept_base)
    print(f"tiling, {objects} boxes, {len(tiles)} tiles: clip every box {base * 1e3:.0f} ms, "
          f"Tiling.tile {ours * 1e3:.0f} ms, ratio {base / ours:.1f}x ({kept} tile objects)")


def bench_job(scenes: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = write_format("dota", Path(tmp) / "data", count=scenes, size=1500, seed=0, num_objects=(60, 90))
        source = DotaSource(root / "DOTA", subset_classes("sota"))
        trainer = functools.partial(L.Trainer, accelerator="cpu", devices=1, enable_model_summary=False)
        rates = {}
        for n in (0, workers):
            out = Path(tmp) / f"out{n}"
            start = time.perf_counter()
            meta = run_labeling(source, PolygonFillLabeler(), out, tiling=Tiling(size=1024, gap=200),
                                num_workers=n, progress=False, make_trainer=trainer)
            elapsed = time.perf_counter() - start
            counts = meta["counts"]
            rates[n] = (counts["images"] / elapsed, counts["instances"] / elapsed)
            print(f"job, {scenes} scenes 1500 x 1500, {n} workers: {counts['images']} tiles, "
                  f"{counts['instances']} objects in {elapsed:.1f} s = {rates[n][0]:.2f} images/s, "
                  f"{rates[n][1]:.1f} objects/s")
        print(f"job, {workers} workers against none: ratio {rates[workers][0] / rates[0][0]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bench_tiling(args.objects)
    bench_job(args.scenes, args.workers)


if __name__ == "__main__":
    main()
