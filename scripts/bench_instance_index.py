"""Reading a subset's instances.json for the instance task: samrs' streamed per-image index against
`json.load` of the whole file, in one run.

    python scripts/bench_instance_index.py [--annotations 300000] [--per-image 150]

Writes a SOTA-like instances.json (1024 x 1024 tiles, `--per-image` instances each, compressed RLEs
of rotated rectangles, rotated boxes) into a temporary directory, then, each in a fresh process
(spawned, so peak memory is the pass's own): builds the index (samrs.data.instance_index: one
streamed pass, spooled lines, grouped blob) and reads every image's annotations through it; and the
baseline, `json.load` plus a dict of annotations per image, which is what a dataset would hold in
every DataLoader worker. Prints time, peak resident memory above the process's start, and the
per-image read time; the ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from samrs.classes import subset_classes
from samrs.geometry import rasterize_polygon, rotated_rect
from samrs.labeling.rle import crop_to_rle


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", type=int, default=300_000)
    p.add_argument("--per-image", type=int, default=150)
    return p.parse_args()


def write_instances(path: Path, annotations: int, per_image: int) -> None:
    """A COCO file: images first, annotations image by image, categories last (samrs' writer's order)."""
    g = np.random.default_rng(0)
    pool = []  # distinct shapes, reused: the file's size is what matters
    for _ in range(500):
        w, h = g.uniform(8, 60, 2)
        corners = rotated_rect(w, h, w, h, g.uniform(0, np.pi))
        mask = rasterize_polygon(corners, int(2 * h) + 1, int(2 * w) + 1)
        pool.append((mask, corners))
    images = -(-annotations // per_image)
    with open(path, "w") as f:
        f.write('{"images": [')
        f.write(",".join(json.dumps({"id": i + 1, "file_name": f"images/P{i:05d}__1024__0___0.png", "width": 1024,
                                     "height": 1024}) for i in range(images)))
        f.write('], "annotations": [')
        for k in range(annotations):
            mask, corners = pool[k % len(pool)]
            x0, y0 = (int(v) for v in g.integers(0, 1024 - 130, 2))
            ys, xs = np.nonzero(mask)
            ann = {"id": k + 1, "image_id": k // per_image + 1, "category_id": int(g.integers(0, 18)),
                   "bbox": [x0 + float(xs.min()), y0 + float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                   "area": int(mask.sum()), "segmentation": crop_to_rle(mask, x0, y0, 1024, 1024), "iscrowd": 0,
                   "score": 0.95, "prompt": "hbox", "object_index": k % per_image,
                   "rbox": [round(float(v), 2) for v in (corners + [x0, y0]).reshape(-1)]}
            f.write(("," if k else "") + json.dumps(ann))
        f.write('], "categories": ' + json.dumps([{"id": i, "name": n} for i, n in enumerate(subset_classes("sota").names)]))
        f.write("}")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def samrs_index(path: str, directory: str, queue) -> None:
    from samrs.data.instance_index import InstanceIndex
    from samrs.data.layout import SubsetLayout

    start_mem = _peak_mib()
    t = time.perf_counter()
    index = InstanceIndex.open(path, subset_classes("sota"), SubsetLayout(), directory)
    built = time.perf_counter() - t
    t = time.perf_counter()
    count = sum(len(index.annotations(n)) for n in index.images)
    read = (time.perf_counter() - t) / len(index)
    queue.put({"build": built, "memory": _peak_mib() - start_mem, "read": read, "count": count})


def json_load(path: str, directory: str, queue) -> None:
    start_mem = _peak_mib()
    t = time.perf_counter()
    data = json.loads(Path(path).read_text())
    per_image: dict[int, list] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    built = time.perf_counter() - t
    t = time.perf_counter()
    count = sum(len(per_image.get(i["id"], [])) for i in data["images"])
    read = (time.perf_counter() - t) / len(data["images"])
    queue.put({"build": built, "memory": _peak_mib() - start_mem, "read": read, "count": count})


def run(fn, path: Path, directory: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=fn, args=(str(path), str(directory), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "instances.json"
        t = time.perf_counter()
        write_instances(path, args.annotations, args.per_image)
        size = path.stat().st_size / 2**20
        print(f"instances.json: {args.annotations} annotations, {args.per_image} per image, {size:.0f} MiB "
              f"(written in {time.perf_counter() - t:.0f} s)")
        ours = run(samrs_index, path, Path(tmp) / "index")
        theirs = run(json_load, path, Path(tmp))
        assert ours["count"] == theirs["count"] == args.annotations
        blob = (Path(tmp) / "index" / "instances-index.bin").stat().st_size / 2**20
    print("| pass | time | peak memory | one image's annotations |\n|---|---:|---:|---:|")
    print(f"| samrs index (build once, {blob:.0f} MiB blob) | {ours['build']:.1f} s | {ours['memory']:.0f} MiB | "
          f"{1e3 * ours['read']:.2f} ms |")
    print(f"| json.load + dict per image | {theirs['build']:.1f} s | {theirs['memory']:.0f} MiB | "
          f"{1e3 * theirs['read']:.3f} ms |")
    print(f"memory: {theirs['memory'] / max(ours['memory'], 1e-9):.0f}x less with the index "
          f"(held once per DataLoader worker by the baseline); build {ours['build'] / theirs['build']:.2f}x the "
          f"baseline's load time")


if __name__ == "__main__":
    main()
