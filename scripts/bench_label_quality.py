"""Speed and memory of scoring a labeled subset (samrs.labeling.quality.evaluate_subset).

python scripts/bench_label_quality.py [--scenes 4] [--size 1500] [--objects 100 150]

Generated DOTA scenes with their iSAID masks are labeled with polygon_fill through iSAID, tiled
1024 / 200 as SOTA, then scored twice:

- samrs: instances.json streamed one image at a time, I and U on the run-length encodings,
  ground truth as crops;
- baseline: instances.json loaded whole, every label decoded to a full tile mask, the source's
  full-size ground-truth masks (`instance_masks`) cut to the tile, I and U with numpy.

Both must give the same I and U for every instance; the script prints their times and peak Python
memory (tracemalloc, numpy arrays included) and the ratios.
"""

from __future__ import annotations

import argparse
import functools
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import lightning as L
import numpy as np

from samrs.classes import subset_classes
from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.labeling.quality.evaluate import evaluate_subset
from samrs.labeling.rle import rle_to_mask
from samrs.scenes.formats import write_format
from samrs.sources.isaid import IsaidSource
from samrs.sources.tiling import Tiling


def baseline(subset: Path, source: IsaidSource, tiling: Tiling) -> tuple[int, int, int]:
    """(instances, sum I, sum U) with full masks everywhere."""
    coco = json.loads((subset / "instances.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    items = {item.name: item for item in source.items(print)}
    count = inter = union = 0
    for image in coco["images"]:
        record = source.read(items[image["source_image"]], print)
        tile = {t.name: t for t in tiling.tile(record)}[Path(image["file_name"]).stem]
        truth = source.instance_masks(record)
        x, y = tile.offset
        for ann in by_image.get(image["id"], []):
            obj = tile.objects[ann["object_index"]]
            part = truth[obj.extras.get("source_index", ann["object_index"])][y : y + tile.height, x : x + tile.width]
            full = np.zeros((tile.height, tile.width), bool)  # a tile may reach past the image
            full[: part.shape[0], : part.shape[1]] = part
            label = rle_to_mask(ann["segmentation"])
            count += 1
            inter += int((label & full).sum())
            union += int((label | full).sum())
    return count, inter, union


def measure(fn) -> tuple[float, float, object]:
    """Seconds, peak MiB and result of fn()."""
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--size", type=int, default=1500)
    parser.add_argument("--objects", type=int, nargs=2, default=(100, 150))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_format("dota", Path(tmp) / "data", args.scenes, args.size, seed=3, num_objects=args.objects)
        source = IsaidSource(root / "iSAID", subset_classes("sota"), split="train")
        tiling = Tiling(size=1024, gap=200)
        subset = Path(tmp) / "subset"
        trainer = functools.partial(L.Trainer, accelerator="cpu", devices=1, enable_model_summary=False)
        run_labeling(source, PolygonFillLabeler(), subset, tiling=tiling, progress=False, num_workers=0,
                     make_trainer=trainer)
        base_s, base_mb, (count, inter, union) = measure(lambda: baseline(subset, source, tiling))
        ours_s, ours_mb, report = measure(lambda: evaluate_subset(subset, source, instances_csv=False))
    assert (report["instances"], report["intersection"], report["union"]) == (count, inter, union), "results differ"
    print(f"{args.scenes} scenes {args.size} px, {report['counts']['images']} tiles, {count} instances "
          f"(mIoU_I {100 * report['mIoU_I']:.2f}, mIoU_P {100 * report['mIoU_P']:.2f}, same in both)")
    print(f"baseline (full masks): {base_s:6.2f} s  peak {base_mb:7.1f} MiB")
    print(f"samrs (runs, crops):   {ours_s:6.2f} s  peak {ours_mb:7.1f} MiB")
    print(f"speed-up x{base_s / ours_s:.1f}, memory / {base_mb / ours_mb:.1f}")


if __name__ == "__main__":
    main()
