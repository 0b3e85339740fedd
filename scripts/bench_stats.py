"""Benchmark of the stats job's two passes against the simple ways of doing them, in one run.

Instances: samrs' streaming pass (ijson, area from the RLE) against json.load of the whole file with
the area from the RLE, and against json.load with every mask decoded (what reading instances.json
"by hand" does). Labels: the label pass in this process against `--workers` processes. Each
measurement runs in a fresh process so that its peak memory (max RSS) is its own.

    python scripts/bench_stats.py [--annotations 1000000] [--labels 400] [--label-size 1024] [--workers 2]
                                  [--decode-baseline]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from samrs.labeling.rle import crop_to_rle
from samrs.utils.io import write_json, write_png

HW = 1024


def make_data(root: Path, annotations: int, labels: int, label_size: int) -> None:
    """A sota-like subset: `labels` label maps with rectangles, and an instances.json of
    `annotations` rectangular RLEs on 1024x1024 images (the file is what the instance pass reads)."""
    rng = np.random.default_rng(0)
    n_images = max(annotations // 100, 1)
    anns = []
    for i in range(annotations):
        h, w = (int(v) for v in rng.integers(4, 60, 2))
        x0, y0 = (int(v) for v in rng.integers(0, HW - 60, 2))
        rle = crop_to_rle(np.ones((h, w), bool), x0, y0, HW, HW)
        anns.append({"id": i + 1, "image_id": int(rng.integers(1, n_images + 1)), "category_id": int(rng.integers(0, 18)),
                     "bbox": [x0, y0, w, h], "area": h * w, "segmentation": rle, "iscrowd": 0, "score": 0.9})
    images = [{"id": i + 1, "file_name": f"images/t{i:06d}.png", "width": HW, "height": HW} for i in range(n_images)]
    write_json(root / "instances.json", {"images": images, "annotations": anns, "categories": []}, indent=None)
    write_json(root / "meta.json", {"subset": "sota", "classes": [str(i) for i in range(18)]})
    for i in range(labels):
        label = np.full((label_size, label_size), 255, np.uint8)
        for _ in range(60):
            y, x = rng.integers(0, label_size - 40, 2)
            label[y : y + rng.integers(4, 40), x : x + rng.integers(4, 40)] = rng.integers(0, 18)
        write_png(root / "labels" / f"t{i:06d}.png", label)


def measure(kind: str, root: Path, workers: int) -> dict:
    """Run one pass in this (fresh) process; its time and this process's peak RSS."""
    from pycocotools import mask as mask_utils

    from samrs.analysis import StatsSettings, open_subset
    from samrs.analysis.counts import SubsetCounts, iter_label_summaries

    settings = StatsSettings((8, 16, 32, 64, 96, 128, 256, 512), {"small": 32, "medium": 96},
                             (0, 1, 2, 5, 10, 100), 10, 10, 20, check_images=False)
    files = open_subset(root)
    start = time.perf_counter()
    if kind == "stream":
        counts = SubsetCounts(files, settings)
        for name, ann in files.iter_annotations():
            counts.add_annotation(name, ann)
        total = sum(counts.instance_pixels)
    elif kind in ("load_area", "load_decode"):
        coco = json.loads((root / "instances.json").read_text())
        total = 0
        for ann in coco["annotations"]:
            rle = ann["segmentation"]
            total += int(mask_utils.area(rle) if kind == "load_area" else mask_utils.decode(
                {"size": rle["size"], "counts": rle["counts"].encode()}).sum())
    else:  # label pass
        total = sum(int(s.hist[:18].sum()) for s in iter_label_summaries(files, False, workers, False))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "max_rss_mb": peak_rss_mib(), "total": total}


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over the
    memory of the parent that forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run(kind: str, root: Path, workers: int = 0) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, "--root", str(root), "--workers", str(workers)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotations", type=int, default=1_000_000)
    ap.add_argument("--labels", type=int, default=400)
    ap.add_argument("--label-size", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--decode-baseline", action="store_true",
                    help="also time json.load + decoding every mask (about 3 ms per annotation)")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, Path(args.root), args.workers)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_data(root, args.annotations, args.labels, args.label_size)
        size_mb = (root / "instances.json").stat().st_size / 2**20
        print(f"instances.json: {args.annotations:,} annotations, {size_mb:.0f} MiB")
        stream = run("stream", root)
        for baseline in ("load_area", "load_decode") if args.decode_baseline else ("load_area",):
            base = run(baseline, root)
            assert base["total"] == stream["total"], (base, stream)
            print(f"  stream vs {baseline:11s}: time {stream['seconds']:6.1f} s vs {base['seconds']:6.1f} s "
                  f"(speed-up x{base['seconds'] / stream['seconds']:.2f}), peak RSS {stream['max_rss_mb']:6.0f} MiB vs "
                  f"{base['max_rss_mb']:6.0f} MiB (memory / x{base['max_rss_mb'] / stream['max_rss_mb']:.2f})")
        print(f"labels: {args.labels} PNGs of {args.label_size}x{args.label_size}")
        one = run("labels", root, 0)
        many = run("labels", root, args.workers)
        assert one["total"] == many["total"]
        print(f"  {args.workers} workers vs in-process: {many['seconds']:.1f} s vs {one['seconds']:.1f} s "
              f"(speed-up x{one['seconds'] / many['seconds']:.2f}), {args.labels / many['seconds']:.0f} labels/s")


if __name__ == "__main__":
    main()
