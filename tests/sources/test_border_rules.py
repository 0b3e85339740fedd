"""Boxes at and beyond the image border (issue 18, defect 5): the tiling's min_visible rule holds at
the image border too, clipped objects are truncated, boxes far larger than the image are
implausible_box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from samrs.classes import subset_classes
from samrs.geometry import polygon_area
from samrs.label import label
from samrs.sources.base import BorderRules
from samrs.sources.common import ObjectChecker
from samrs.sources.records import ImageRecord
from samrs.sources.tiling import Tiling
from samrs.utils.hydra import config_dir

SOTA = subset_classes("sota")
WIDTH, HEIGHT = 100, 80


def box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def place(problems, corners: np.ndarray, hbox: np.ndarray | None = None, **rules):
    checker = ObjectChecker(SOTA, WIDTH, HEIGHT, Path("P0000.txt"), problems, rules=BorderRules(**rules))
    return checker.make("ship", corners, 3, hbox)


def test_huge_coordinates_are_an_implausible_box(problems):
    assert place(problems, box(0, 0, 1e12, 1e12)) is None
    assert [(p.kind, p.action) for p in problems] == [("implausible_box", "skipped")]
    assert "more than 2 times" in problems[0].message
    problems.clear()
    # a generous factor lets the box through the check; min_visible still drops it (0 % inside)
    assert place(problems, box(0, 0, 1e12, 1e12), implausible_scale=1e13) is None
    assert [(p.kind, p.action) for p in problems] == [("out_of_image_box", "dropped")]


def test_an_object_mostly_outside_is_dropped_as_a_tile_drops_it(problems):
    sliver = box(84, 10, 184, 40)  # 16 % inside the 100 px wide image
    assert place(problems, sliver) is None
    assert [(p.kind, p.action) for p in problems] == [("out_of_image_box", "dropped")]
    assert "16% of it lies inside" in problems[0].message
    problems.clear()
    kept = place(problems, sliver, min_visible=0.1)
    assert kept.truncated and kept.extras["visible_fraction"] == 0.16
    assert polygon_area(kept.polygon) == pytest.approx(16 * 30)
    assert [(p.kind, p.action) for p in problems] == [("out_of_image_box", "clipped")]


def test_a_clipped_object_is_truncated_and_loose_boxes_are_not(problems):
    cut = place(problems, box(80, 10, 105, 40))  # 80 % inside
    assert cut.truncated and cut.extras["visible_fraction"] == 0.8
    np.testing.assert_array_equal(cut.hbox, [80, 10, 100, 40])
    inside = place(problems, box(10, 10, 40, 40), hbox=np.array([10, 10, 40, 90.0]))  # only the given hbox reaches out
    assert not inside.truncated and "visible_fraction" not in inside.extras


def test_tiles_count_the_part_the_image_cut_off(problems):
    """The object is 25 px wide, 20 px of it in the image (x 80..100). Windows of 95 px at x = 0 and
    5: the first holds x 80..95, 15 px: 75 % of what the image shows, but 60 % of the object."""
    record = ImageRecord("P0000", None, WIDTH, HEIGHT, [place(problems, box(80, 10, 105, 40))])
    strict = Tiling(size=95, gap=90, min_visible=0.7).tile(record)
    assert [t.offset for t in strict] == [(0, 0), (5, 0)]
    assert strict[0].objects == []  # 60 % < 0.7
    assert [o.extras["visible_fraction"] for o in strict[1].objects] == [0.8]  # as the image left it
    assert strict[1].objects[0].truncated
    lenient = Tiling(size=95, gap=90, min_visible=0.5).tile(record)
    assert [o.extras["visible_fraction"] for o in lenient[0].objects] == [pytest.approx(0.6)]


def test_the_label_job_applies_its_tiling_min_visible_and_scale(tmp_path):
    root = tmp_path / "DOTA"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labelTxt").mkdir(parents=True)
    Image.new("RGB", (WIDTH, HEIGHT)).save(root / "train" / "images" / "P0000.png")
    lines = ["84 10 184 10 184 40 84 40 ship 0", "0 0 1e12 0 1e12 1e12 0 1e12 ship 0"]
    (root / "train" / "labelTxt" / "P0000.txt").write_text("\n".join(lines) + "\n")

    def run(out: str, *overrides: str) -> dict:
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("label", overrides=["source=dota", f"source.root={root}", "labeler=polygon_fill",
                                              f"output_dir={tmp_path / out}", "num_workers=0", "progress=false",
                                              "tiling=none", *overrides])
        return label(cfg)["counts"]

    assert run("default")["instances"] == 0
    assert run("lenient", "tiling.min_visible=0.1", "implausible_box_scale=1e13")["instances"] == 1
