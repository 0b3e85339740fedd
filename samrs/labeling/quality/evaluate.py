"""Score a labeled subset against the ground-truth masks of the source it was labeled from.

The subset's images and annotations are streamed from instances.json one image at a time; each
image's source image is read again (record, tiles, ground-truth crops) once for all its tiles.

Matching. A labeler is prompted with each object of an image (or tile) that has a class, and the
subset keeps, per mask, the object's index in that image's record (`object_index`). Re-tiling the
source image with the subset's own tiling gives the same records, so a prompted object leads to its
source object (`source_index` after tiling) and to that object's ground-truth mask, cut to the tile.
No overlap test is involved. Then, per prompted object:

- it has a mask in the subset: scored with I and U of the two masks;
- it has none (the labeler's mask was empty, so the writer left it out): scored with I = 0 and
  U = its ground-truth area (IoU 0), counted as `empty_predictions`;
- its object has no ground-truth mask (HRSC2016 ships without seg_color, unsegmented images): left
  out, counted as `no_truth`; its ground truth has no pixel in this image or tile: left out,
  counted as `empty_truth`.

Ground-truth objects that no image prompted (tiling left them out of every tile below
`min_visible`, or their class is unknown) are left out of the means and counted as `unprompted`:
the means measure the labels that exist, the count says how much of the ground truth they cover.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.progress import track

from samrs.analysis.coco_stream import iter_annotations, iter_images
from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.labeling.quality.metrics import QualityMeter
from samrs.labeling.quality.truth import CropLike, crop_in_window, has_truth
from samrs.labeling.rle import crop_to_rle, rle_intersection_union
from samrs.sources.base import Problem, Source
from samrs.sources.records import ImageRecord
from samrs.sources.tiling import Tiling
from samrs.utils.io import atomic_path, write_json

QUALITY_FILE = "quality.json"
INSTANCES_FILE = "quality_instances.csv"
# meta.json fields that say what made the labels (SamLabeler.meta adds model and checkpoint).
LABELER_FIELDS = ("labeler", "prompt", "family", "model_type", "checkpoint", "sha256", "multimask", "whole_image")
CSV_COLUMNS = ("image", "source_image", "object_index", "source_index", "class", "intersection", "union",
               "iou", "score", "status")
DEFINITIONS = {
    "mIoU_I": "mean over instances of I_i / U_i",
    "mIoU_P": "sum over instances of I_i / sum over instances of U_i",
    "I_i, U_i": "pixels in both / in either of instance i's labeled and ground-truth masks",
}


def iter_labeled_images(instances_path: Path) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(image entry, its annotations) of a COCO file whose annotations follow the image order, as
    SubsetWriter writes them; two streams over the file, so memory holds one image's entries."""
    annotations = iter_annotations(instances_path)
    pending = next(annotations, None)
    passed: set[Any] = set()
    for image in iter_images(instances_path):
        group = []
        while pending is not None and pending.get("image_id") == image["id"]:
            group.append(pending)
            pending = next(annotations, None)
        passed.add(image["id"])
        if pending is not None and pending.get("image_id") in passed:
            raise BadFileError(f"{instances_path}: annotations are not in the order of the images (as samrs.label "
                               f"writes them): annotation {pending.get('id')} of image {pending.get('image_id')} "
                               "comes after those of later images")
        yield image, group
    if pending is not None:
        raise BadFileError(f"{instances_path}: annotation {pending.get('id')} refers to image "
                           f"{pending.get('image_id')}, which 'images' does not list")


@dataclass
class SourceImage:
    """One source image read again: its tiles (or itself) by name, its ground-truth crops, and the
    source indices of its objects that some labeled image prompted."""

    tiles: dict[str, ImageRecord]
    truth: list[CropLike | None]
    prompted: set[int]


def _ignore(problem: Problem) -> None:
    """Problems of the source: the label job reported them already."""


class SourceImages:
    """The source's images by name, read when first asked for; the last one is kept, as a subset
    lists the tiles of one source image together. Coverage of each one read is kept by name."""

    def __init__(self, source: Source, tiling: Tiling) -> None:
        self.source = source
        self.tiling = tiling
        self.items = {item.name: item for item in source.items(_ignore)}
        self.current: tuple[str, SourceImage | None] | None = None
        self.truth_with_pixels: dict[str, set[int]] = {}  # source indices whose ground truth has a pixel
        self.prompted: dict[str, set[int]] = {}

    def get(self, name: str) -> SourceImage | None:
        if self.current is None or self.current[0] != name:
            self.current = (name, self._read(name))
        return self.current[1]

    def _read(self, name: str) -> SourceImage | None:
        item = self.items.get(name)
        record = None if item is None else self.source.read(item, _ignore)
        if record is None:
            return None
        truth = self.source.instance_crops(record)
        self.truth_with_pixels[name] = {i for i, crop in enumerate(truth) if crop is not None and crop.mask.any()}
        tiles = {tile.name: tile for tile in self.tiling.tile(record)}
        return SourceImage(tiles, truth, self.prompted.setdefault(name, set()))

    def unprompted(self) -> int:
        """Ground-truth objects (with pixels) of the images read that no image prompted."""
        return sum(len(truth - self.prompted[name]) for name, truth in self.truth_with_pixels.items())


class InstanceLog:
    """quality_instances.csv: a row per scored instance (with no path: nothing is written)."""

    def __init__(self, stack: ExitStack, path: Path | None) -> None:
        self.writer = None
        if path is not None:
            tmp = stack.enter_context(atomic_path(path))
            self.writer = csv.writer(stack.enter_context(open(tmp, "w", newline="")))
            self.writer.writerow(CSV_COLUMNS)

    def write(self, *row: Any) -> None:
        if self.writer is not None:
            self.writer.writerow(row)


def read_meta(root: Path, source: Source) -> dict[str, Any]:
    """The subset's meta.json, checked to come from `source`."""
    path = root / "meta.json"
    if not path.is_file():
        raise MissingPathError(f"{path}: no meta.json; label quality is measured on a finished samrs.label output")
    meta = json.loads(path.read_text())
    if meta.get("source") != source.name:
        raise ConfigError(f"{root} was labeled from source {meta.get('source')!r}, not {source.name!r}: "
                          "give the source it was labeled from")
    return meta


def evaluate_subset(subset_dir: str | Path, source: Source, *, instances_csv: bool = True,
                    progress: bool = False) -> dict[str, Any]:
    """Score the subset at `subset_dir` (written by samrs.label from `source`) against the source's
    ground-truth masks; write quality.json (and quality_instances.csv) there and return the report."""
    if not has_truth(source):
        raise ConfigError(f"source {source.name} has no ground-truth masks (instance_crops): "
                          "label quality needs hrsc2016 or isaid")
    root = Path(subset_dir)
    meta = read_meta(root, source)
    tiling = Tiling(**meta.get("tiling") or {})
    images = SourceImages(source, tiling)
    meter = QualityMeter(source.classes.names)
    counts = dict.fromkeys(("images", "empty_predictions", "no_truth", "empty_truth", "unmatched_annotations",
                            "images_without_source"), 0)
    labeled_sources: set[str] = set()
    stream = iter_labeled_images(root / "instances.json")
    if progress:
        stream = track(stream, total=meta.get("counts", {}).get("images"), description="scoring labels")
    with ExitStack() as stack:
        log = InstanceLog(stack, root / INSTANCES_FILE if instances_csv else None)
        for entry, annotations in stream:
            counts["images"] += 1
            name = Path(entry["file_name"]).stem
            source_name = entry.get("source_image", name)
            labeled_sources.add(source_name)
            image = images.get(source_name)
            tile = None if image is None else image.tiles.get(name)
            if tile is None:
                counts["images_without_source"] += 1
                continue
            score_image(tile, image, annotations, meter, counts, lambda *row: log.write(name, source_name, *row))
    counts["source_images"] = len(labeled_sources)
    counts["source_images_not_labeled"] = len(images.items.keys() - labeled_sources)
    counts["unprompted"] = images.unprompted()
    counts["scored"] = meter.overall.instances
    report = build_report(meta, source, meter, counts)
    write_json(root / QUALITY_FILE, report)
    return report


def build_report(meta: dict[str, Any], source: Source, meter: QualityMeter, counts: dict[str, int]) -> dict[str, Any]:
    """quality.json: what was scored (dataset, labeler, tiling), the means overall and per class, counts."""
    split = getattr(source, "split", None)
    return {
        "subset": meta.get("subset"),
        "dataset": {"source": source.name, "root": str(source.root),
                    "split": list(split) if isinstance(split, (list, tuple)) else split},
        **{k: meta[k] for k in LABELER_FIELDS if k in meta},
        "tiling": meta.get("tiling"),
        "definitions": DEFINITIONS,
        **meter.overall.to_dict(),
        "per_class": meter.per_class(),
        "counts": counts,
    }


def quality_summary(report: dict[str, Any], subset_dir: str | Path) -> str:
    """The lines printed after a labeling run scored its labels."""
    c = report["counts"]
    what = " ".join(f"{k} {report[k]}" for k in ("labeler", "prompt", "model_type") if report.get(k))
    lines = [f"label quality ({what}): " + (
        f"mIoU_I {100 * report['mIoU_I']:.2f}, mIoU_P {100 * report['mIoU_P']:.2f} over {c['scored']} instances"
        if c["scored"] else "no instance with a ground-truth mask")]
    left_out = {k: c[k] for k in ("empty_predictions", "no_truth", "empty_truth", "unprompted",
                                  "unmatched_annotations", "images_without_source") if c[k]}
    if left_out:
        lines.append("  " + ", ".join(f"{k} {v}" for k, v in left_out.items()) + " (docs/label_quality.md)")
    lines.append(f"  {Path(subset_dir) / QUALITY_FILE}")
    return "\n".join(lines)


def score_image(tile: ImageRecord, image: SourceImage, annotations: list[dict[str, Any]], meter: QualityMeter,
                counts: dict[str, int], log: Callable[..., None]) -> None:
    """Score every prompted object of one labeled image (a tile of `image`, or all of it)."""
    by_index: dict[int, dict[str, Any]] = {}
    for ann in annotations:
        index = ann.get("object_index")
        if not isinstance(index, int) or not 0 <= index < len(tile.objects) or index in by_index:
            counts["unmatched_annotations"] += 1
        else:
            by_index[index] = ann
    x, y = tile.offset
    for index, obj in enumerate(tile.objects):
        if obj.class_id is None:  # never prompted: labelers leave objects of unknown class out
            continue
        source_index = obj.extras.get("source_index", index)
        image.prompted.add(source_index)
        ann = by_index.pop(index, None)
        crop = image.truth[source_index]
        truth = None if crop is None else crop_in_window(crop, x, y, tile.width, tile.height)
        if truth is None:
            counts["no_truth" if crop is None else "empty_truth"] += 1
            continue
        if ann is None:
            counts["empty_predictions"] += 1
            inter, union, status, score = 0, int(truth.mask.sum()), "empty_prediction", None
        else:
            truth_rle = crop_to_rle(truth.mask, truth.x0, truth.y0, tile.height, tile.width)
            inter, union = rle_intersection_union(ann["segmentation"], truth_rle)
            status, score = "scored", ann.get("score")
        iou = meter.add(obj.class_id, inter, union)
        log(index, source_index, meter.class_names[obj.class_id], inter, union, f"{iou:.6f}", score, status)
    counts["unmatched_annotations"] += len(by_index)  # masks of objects that were not prompted
