"""Input speed of the training pipeline: samples per second on one core, naive vs samrs.

    python scripts/bench_data.py [--tiles 8] [--samples 300] [--rounds 3]

Writes 1024x1024 tiles as a samrs subset (images from the real samples in ../shared/samples when
present, else generated scenes; labels are generated object maps, 255 elsewhere, as SAM labels
look), then times in the same run, single process and single thread:

- naive: decode the whole PNG and label (samrs.utils.io, PIL; and OpenCV's decoder as a second
  baseline), then albumentations RandomScale + PadIfNeeded + RandomCrop + flips, rot90, colour
  jitter, gamma, normalise (the same recipe, `window_first=false`);
- window-first on the PNG files: the crop window chosen in source coordinates, the rest unchanged;
- window-first on the block cache with each codec (png and raw lossless, jpeg lossy).

Prints samples/s per core, the ratio to naive (median of rounds), cache build time and disk size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from samrs.data.blocks import BlockCodec
from samrs.data.cache import SubsetCache
from samrs.data.dataset import SegmentationDataset
from samrs.data.layout import SubsetLayout
from samrs.data.readers import ArraySample, FileReader
from samrs.data.transforms import train_transform, val_transform
from samrs.scenes.generate import generate_scene
from samrs.utils.io import read_rgb, write_png, write_text

SIZE = 1024
# (file under the samples folder, top-left corner of the 1024x1024 tile taken from it)
REAL_TILES = [
    ("dota_devkit_yolo/DOTA_demo/images/P1478__1__853___962.png", (0, 0)),
    ("mmseg_rs/tests/data/pseudo_loveda_dataset/img_dir/0.png", (0, 0)),
    ("dota_devkit/example/images/P0706.png", (40, 60)),
    ("mmrotate/demo/demo.jpg", (0, 0)),
    ("mmrotate/demo/dota_demo.jpg", (0, 0)),
    ("mmrotate/demo/dota_demo.jpg", (540, 590)),
]


def tile_images(samples: Path, count: int) -> list[np.ndarray]:
    """Real 1024x1024 tiles where the samples are present, generated scenes for the rest."""
    tiles = []
    for rel, (y, x) in REAL_TILES:
        if (samples / rel).is_file() and len(tiles) < count:
            image = read_rgb(samples / rel)[y:y + SIZE, x:x + SIZE]
            if image.shape[:2] == (SIZE, SIZE):
                tiles.append(image)
    while len(tiles) < count:
        tiles.append(generate_scene("sota", SIZE, (30, 60), seed=len(tiles)).image)
    return tiles


def write_subset(root: Path, count: int, samples: Path) -> list[str]:
    names = []
    for i, image in enumerate(tile_images(samples, count)):
        name = f"tile_{i:03d}"
        label = generate_scene("sota", SIZE, (30, 60), seed=100 + i).label_map()
        write_png(root / "images" / f"{name}.png", image)  # samrs' writer settings (PNG level 1)
        write_png(root / "labels" / f"{name}.png", label)
        names.append(name)
    write_text(root / "train.txt", "".join(f"{n}\n" for n in names))
    return names


class Cv2Reader(FileReader):
    """The naive pipeline with OpenCV's PNG decoder (faster than PIL's on some files)."""

    def open(self, name: str) -> ArraySample:
        image = cv2.imread(str(self.layout.image_path(self.root, name)), cv2.IMREAD_COLOR)
        label = cv2.imread(str(self.layout.label_path(self.root, name)), cv2.IMREAD_UNCHANGED)
        return ArraySample(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), label)


def rate(dataset: SegmentationDataset, samples: int) -> float:
    """Samples per second of dataset[i], cycling over the tiles."""
    dataset[0]
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % len(dataset)]
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=8)
    parser.add_argument("--samples", type=int, default=300, help="samples per pipeline and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples-dir", type=Path,
                        default=Path(os.environ.get("SAMRS_SAMPLES", Path(__file__).resolve().parents[1].parent
                                                    / "shared" / "samples")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "SOTA"
        names = write_subset(root, args.tiles, args.samples_dir)
        png_bytes = sum((root / "images" / f"{n}.png").stat().st_size for n in names)
        layout, num_classes = SubsetLayout(split_files={"train": "train.txt"}), 18
        files = FileReader(root, layout, num_classes)
        pipelines = {
            "naive (whole PNG + albumentations)": (files, False),
            "naive, OpenCV PNG decoder": (Cv2Reader(root, layout, num_classes), False),
            "window-first, PNG files": (files, True),
        }
        print(f"{len(names)} tiles of {SIZE}x{SIZE} ({png_bytes / len(names) / 1e6:.2f} MB PNG each); "
              f"{args.samples} samples x {args.rounds} rounds; torch {torch.__version__}, 1 thread")
        png_cache = None
        for codec in ("png", "raw", "jpeg"):
            cache = SubsetCache.create(Path(tmp) / "cache", f"sota-{codec}", root, layout, num_classes,
                                       BlockCodec(codec=codec))
            start = time.perf_counter()
            cache.build(names, workers=0, progress=False)
            built = (time.perf_counter() - start) / len(names)
            disk = sum(p.stat().st_size for p in cache.reader.directory.glob("*.blk"))
            print(f"cache {codec:4s}: build {built * 1000:.0f} ms/tile, disk {disk / png_bytes:.2f}x the PNGs")
            lossy = " (lossy)" if codec == "jpeg" else ""
            pipelines[f"window-first, block cache {codec}{lossy}"] = (cache.reader, True)
            png_cache = cache if codec == "png" else png_cache

        runs: dict[str, list[float]] = {k: [] for k in pipelines}
        for _ in range(args.rounds):  # interleaved rounds: machine noise hits every pipeline alike
            for label, (reader, window_first) in pipelines.items():
                dataset = SegmentationDataset(names, reader, train_transform(window_first=window_first))
                runs[label].append(rate(dataset, args.samples))
        base = statistics.median(runs[next(iter(runs))])
        print(f"\ntraining samples (224 crops, scale p=0.5 in [0.5, 2]) per second per core:")
        for label, values in runs.items():
            med = statistics.median(values)
            print(f"  {label:45s} {med:7.1f}/s  {1000 / med:6.1f} ms  x{med / base:.2f}")

        val = {}
        for label, reader, window_first in (("naive (whole PNG + albumentations)", files, False),
                                            ("window-first, block cache png", png_cache.reader, True)):
            val[label] = rate(SegmentationDataset(names, reader, val_transform(window_first=window_first)),
                              max(20, args.samples // 5))
        first = val["naive (whole PNG + albumentations)"]
        print("validation samples (512 centre crops) per second per core:")
        for label, value in val.items():
            print(f"  {label:45s} {value:7.1f}/s  x{value / first:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
