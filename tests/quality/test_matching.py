"""Which ground truth a labeled instance is scored against, and what is left out: a scripted source
whose objects and masks are rectangles, so every I and U is known by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from samrs.classes import subset_classes
from samrs.geometry import rasterize_polygon
from samrs.labeling.fill import PolygonFillLabeler, box_corners
from samrs.labeling.quality.evaluate import evaluate_subset, iter_labeled_images
from samrs.sources.base import Source, SourceItem
from samrs.sources.records import ImageRecord, MaskCrop, ObjectRecord
from samrs.sources.tiling import Tiling
from samrs.utils.io import write_json, write_png

SOTA = subset_classes("sota")
LARGE, SMALL = SOTA.id_of("large-vehicle"), SOTA.id_of("small-vehicle")


def rect_object(box, class_id, **extras) -> ObjectRecord:
    return ObjectRecord(SOTA.names[class_id] if class_id is not None else "unknown", class_id,
                        box_corners(np.array(box, float)), np.array(box, float), extras=extras)


def rect_truth(box, height, width) -> MaskCrop:
    """The pixels of the rectangle x0, y0, x1, y1 (pixel edges) as a crop of a height x width image."""
    full = rasterize_polygon(box_corners(np.array(box, float)), height, width)
    ys, xs = np.nonzero(full)
    if ys.size == 0:
        return MaskCrop(np.zeros((0, 0), bool), 0, 0)
    return MaskCrop(full[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], int(xs.min()), int(ys.min()))


class ScriptedSource(Source):
    """One image; objects are (box, class id, ground-truth box or None, extras) rectangles."""

    name = "scripted"

    def __init__(self, root: Path, width: int, height: int, objects: list) -> None:
        super().__init__(root, SOTA)
        self.width, self.height, self.objects = width, height, objects
        self.image_path = root / "s0.png"
        write_png(self.image_path, np.full((height, width, 3), 90, np.uint8))

    def items(self, report):
        return [SourceItem("s0", self.image_path, None)]

    def read(self, item, report):
        objects = [rect_object(box, cls, **extras) for box, cls, _, extras in self.objects]
        return ImageRecord("s0", self.image_path, self.width, self.height, objects, source=self.name)

    def instance_crops(self, record):
        return [None if truth is None else rect_truth(truth, self.height, self.width)
                for _, _, truth, _ in self.objects]


class DroppingLabeler(PolygonFillLabeler):
    """polygon_fill, but the objects marked `drop` get no mask (as a labeler whose mask is empty)."""

    def label(self, images, records):
        masks = super().label(images, records)
        return [[m for m in image_masks if not record.objects[m.object_index].extras.get("drop")]
                for image_masks, record in zip(masks, records)]


def instance_rows(out: Path) -> list[dict]:
    with open(out / "quality_instances.csv") as f:
        return list(csv.DictReader(f))


def test_what_is_scored_and_what_is_left_out(tmp_path, label_and_score):
    source = ScriptedSource(tmp_path, 40, 30, [
        ((2, 2, 12, 10), LARGE, (3, 2, 12, 10), {}),  # scored: I = 9*8, U = 10*8
        ((20, 2, 30, 6), SMALL, None, {}),  # no ground-truth mask: left out, counted
        ((2, 14, 8, 20), LARGE, (2, 14, 8, 19), {"drop": True}),  # no mask labeled: IoU 0, U = 6*5
        ((20, 14, 30, 20), None, (20, 14, 30, 20), {}),  # unknown class, never prompted: unprompted
        ((32, 20, 38, 26), SMALL, (0, 0, 0, 0), {}),  # ground truth without a pixel: left out, counted
    ])
    report = label_and_score(source, DroppingLabeler(), tmp_path / "out")
    assert report["instances"] == 2
    assert report["mIoU_I"] == pytest.approx((72 / 80 + 0) / 2)
    assert report["mIoU_P"] == pytest.approx(72 / (80 + 30))
    assert report["per_class"] == {"large-vehicle": {"instances": 2, "mIoU_I": report["mIoU_I"],
                                                     "mIoU_P": report["mIoU_P"], "intersection": 72, "union": 110}}
    counts = report["counts"]
    assert {k: counts[k] for k in ("scored", "empty_predictions", "no_truth", "empty_truth", "unprompted",
                                   "unmatched_annotations", "images_without_source")} == {
        "scored": 2, "empty_predictions": 1, "no_truth": 1, "empty_truth": 1, "unprompted": 1,
        "unmatched_annotations": 0, "images_without_source": 0}
    rows = instance_rows(tmp_path / "out")
    assert [(r["object_index"], r["intersection"], r["union"], r["status"]) for r in rows] == [
        ("0", "72", "80", "scored"), ("2", "0", "30", "empty_prediction")]
    assert json.loads((tmp_path / "out" / "quality.json").read_text()) == report


def test_tiles_are_scored_against_the_truth_inside_them(tmp_path, label_and_score):
    """Tiles at x = 0 and 20 (40 px, gap 20) of a 60 x 20 image; ground truth in image pixels."""
    source = ScriptedSource(tmp_path, 60, 20, [
        ((2, 2, 12, 10), LARGE, (3, 2, 12, 10), {}),  # first tile only: 72 / 80
        ((24, 4, 34, 8), LARGE, (24, 4, 34, 9), {}),  # in both tiles, scored in each: 40 / 50
        ((30, 10, 50, 14), SMALL, (30, 10, 50, 13), {}),  # half in the first tile (dropped), whole in the second: 60 / 80
        ((2, 15, 58, 19), SMALL, (2, 15, 58, 19), {}),  # 38/56 < 0.7 visible in either tile: unprompted
    ])
    report = label_and_score(source, PolygonFillLabeler(), tmp_path / "out", tiling=Tiling(size=40, gap=20))
    assert report["instances"] == 4
    assert report["mIoU_I"] == pytest.approx((0.9 + 0.8 + 0.8 + 0.75) / 4)
    assert report["mIoU_P"] == pytest.approx((72 + 40 + 40 + 60) / (80 + 50 + 50 + 80))
    assert report["counts"]["unprompted"] == 1 and report["counts"]["images"] == 2
    scored = {(r["image"], r["source_index"]): (int(r["intersection"]), int(r["union"]))
              for r in instance_rows(tmp_path / "out")}
    assert scored == {("s0__40__0___0", "0"): (72, 80), ("s0__40__0___0", "1"): (40, 50),
                      ("s0__40__20___0", "1"): (40, 50), ("s0__40__20___0", "2"): (60, 80)}
    assert report["tiling"]["size"] == 40  # the subset's own tiling, read from meta.json


def test_masks_of_objects_that_are_not_there_are_counted(tmp_path, label_and_score):
    """An annotation whose object_index the source's record no longer has (the source changed)."""
    source = ScriptedSource(tmp_path, 40, 30, [((2, 2, 12, 10), LARGE, (2, 2, 12, 10), {})])
    out = tmp_path / "out"
    label_and_score(source, PolygonFillLabeler(), out)
    coco = json.loads((out / "instances.json").read_text())
    coco["annotations"].append({**coco["annotations"][0], "id": 2, "object_index": 5})
    write_json(out / "instances.json", coco)
    report = evaluate_subset(out, source)
    assert report["counts"]["unmatched_annotations"] == 1 and report["mIoU_I"] == 1.0


def test_bad_subsets_give_clear_errors(tmp_path, label_and_score):
    source = ScriptedSource(tmp_path, 40, 30, [((2, 2, 12, 10), LARGE, (2, 2, 12, 10), {})])
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        evaluate_subset(tmp_path / "nothing", source)
    out = tmp_path / "out"
    label_and_score(source, PolygonFillLabeler(), out)
    meta = json.loads((out / "meta.json").read_text())
    write_json(out / "meta.json", {**meta, "source": "dota"})
    with pytest.raises(ValueError, match="labeled from source 'dota', not 'scripted'"):
        evaluate_subset(out, source)
    source.instance_crops = None
    with pytest.raises(ValueError, match="no ground-truth masks"):
        evaluate_subset(out, source)


def test_annotations_out_of_image_order_are_refused(tmp_path):
    path = tmp_path / "instances.json"
    images = [{"id": 1, "file_name": "images/a.png"}, {"id": 2, "file_name": "images/b.png"}]
    write_json(path, {"images": images, "annotations": [{"id": 1, "image_id": 1}, {"id": 2, "image_id": 2}]})
    assert [(im["id"], [a["id"] for a in anns]) for im, anns in iter_labeled_images(path)] == [(1, [1]), (2, [2])]
    write_json(path, {"images": images, "annotations": [{"id": 1, "image_id": 2}, {"id": 2, "image_id": 1}]})
    with pytest.raises(ValueError, match="not in the order of the images"):
        list(iter_labeled_images(path))
    write_json(path, {"images": images, "annotations": [{"id": 1, "image_id": 7}]})
    with pytest.raises(ValueError, match="refers to image 7"):
        list(iter_labeled_images(path))
