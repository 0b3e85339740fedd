"""The model-free labelers scored on data whose masks are known: generated HRSC2016 scenes (against
their exact masks, computed here without the evaluation code) and the real iSAID sample P0003."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from samrs.classes import subset_classes
from samrs.geometry import rasterize_polygon
from samrs.labeling.fill import BoxFillLabeler, PolygonFillLabeler, box_corners
from samrs.sources.isaid import IsaidSource

ISAID_DIR = "isaid_devkit/preprocess/dataset/iSAID"


def instance_rows(out: Path) -> dict[tuple[str, int], dict]:
    with open(out / "quality_instances.csv") as f:
        return {(r["image"], int(r["source_index"])): r for r in csv.DictReader(f)}


def expected_fill(source, scenes, shape_of) -> dict[tuple[str, int], tuple[int, int]]:
    """(image, object) -> (I, U) of each object's filled shape against its scene's exact mask,
    with full-image masks: the reader's boxes are what the labelers are given."""
    out = {}
    for item in source.items(print):
        record = source.read(item, print)
        scene = scenes[item.name]
        for i, (obj, drawn) in enumerate(zip(record.objects, scene.objects)):
            filled = rasterize_polygon(shape_of(obj), record.height, record.width)
            out[item.name, i] = (int((filled & drawn.mask).sum()), int((filled | drawn.mask).sum()))
    return out


def test_polygon_fill_on_generated_scenes_matches_the_scene_masks(hrsc_source, hrsc_scenes, tmp_path,
                                                                  label_and_score):
    report = label_and_score(hrsc_source, PolygonFillLabeler(), tmp_path / "poly")
    expected = expected_fill(hrsc_source, hrsc_scenes, lambda obj: obj.corners)
    rows = instance_rows(tmp_path / "poly")
    assert {key: (int(r["intersection"]), int(r["union"])) for key, r in rows.items()} == expected
    ious = [i / u for i, u in expected.values()]
    assert report["instances"] == len(ious) >= 12
    assert report["mIoU_I"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert report["mIoU_P"] == pytest.approx(sum(i for i, _ in expected.values()) / sum(u for _, u in expected.values()))
    assert report["counts"]["source_images"] == 4  # the segmented test images
    # The rotated box is grown to cover the hull: every ship pixel is inside it.
    assert all(i == hrsc_scenes[name].objects[k].area for (name, k), (i, _) in expected.items())


def test_box_fill_is_worse_than_polygon_fill_on_rotated_ships(hrsc_source, hrsc_scenes, tmp_path, label_and_score):
    poly = label_and_score(hrsc_source, PolygonFillLabeler(), tmp_path / "poly")
    box = label_and_score(hrsc_source, BoxFillLabeler(), tmp_path / "box")
    expected = expected_fill(hrsc_source, hrsc_scenes, lambda obj: box_corners(obj.hbox))
    rows_box, rows_poly = instance_rows(tmp_path / "box"), instance_rows(tmp_path / "poly")
    assert {key: (int(r["intersection"]), int(r["union"])) for key, r in rows_box.items()} == expected
    rotated = [(name, k) for name, k in rows_box
               if abs(np.sin(2 * hrsc_scenes[name].objects[k].angle)) > np.sin(np.radians(40))]  # >= 20 deg off axis
    assert len(rotated) >= 4
    for key in rotated:  # a slanted ship fills a small part of its horizontal box
        assert float(rows_box[key]["iou"]) < float(rows_poly[key]["iou"]) - 0.1, key
    assert box["mIoU_I"] < poly["mIoU_I"] and box["mIoU_P"] < poly["mIoU_P"]


def test_fill_labelers_on_the_real_isaid_sample(samples_dir, tmp_path, label_and_score):
    """P0003 (59 instances: large-vehicle, small-vehicle, storage-tank), objects made from the iSAID
    masks. Each mask's rotated box is the minimum-area rectangle around its pixel squares, so it
    covers the mask (I = |mask| for every instance) and polygon_fill's IoU is |mask| / |box|. The
    objects are convex (vehicles, a tank), and a convex shape fills at least half of its
    minimum-area rectangle: the per-class floor is 0.5 (measured: 0.89, 0.87, 0.76). Its horizontal
    box is a rectangle around the mask too, never smaller than the minimum one: box_fill scores no
    higher on any class (measured 0.66 and 0.77 on the vehicles, 0.76 on the upright tank)."""
    source = IsaidSource(samples_dir / ISAID_DIR, subset_classes("sota"), split="val")
    poly = label_and_score(source, PolygonFillLabeler(), tmp_path / "poly")
    box = label_and_score(source, BoxFillLabeler(), tmp_path / "box")
    assert poly["instances"] == box["instances"] == 59
    assert set(poly["per_class"]) == {"large-vehicle", "small-vehicle", "storage-tank"}
    truth = source.instance_crops(source.read(source.items(print)[0], print))
    for rows in (instance_rows(tmp_path / "poly"), instance_rows(tmp_path / "box")):
        assert all(int(r["intersection"]) == truth[k].mask.sum() for (_, k), r in rows.items())  # covered
    for name, totals in poly["per_class"].items():
        assert totals["mIoU_I"] >= 0.5 and totals["mIoU_P"] >= 0.5, name
        assert box["per_class"][name]["mIoU_I"] <= totals["mIoU_I"] + 1e-9, name
