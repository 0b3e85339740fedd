"""The two means against hand computations, intersections and unions of masks, cutting to windows."""

from __future__ import annotations

import numpy as np
import pytest

from samrs.labeling.quality.metrics import QualityMeter, QualityTotals
from samrs.labeling.quality.truth import crop_in_window
from samrs.labeling.rle import crop_to_rle, rle_intersection_union
from samrs.sources.records import MaskCrop


def test_means_by_hand():
    totals = QualityTotals()
    assert totals.miou_i is None and totals.miou_p is None  # nothing scored: no mean, not 0
    assert totals.add(3, 4) == 0.75
    assert totals.add(1, 10) == 0.1
    assert totals.add(0, 6) == 0.0
    # mIoU_I = (3/4 + 1/10 + 0/6) / 3; mIoU_P = (3 + 1 + 0) / (4 + 10 + 6)
    assert totals.miou_i == pytest.approx(0.85 / 3)
    assert totals.miou_p == pytest.approx(4 / 20)
    assert totals.to_dict() == {"instances": 3, "mIoU_I": totals.miou_i, "mIoU_P": 0.2, "intersection": 4,
                                "union": 20}


def test_per_class_and_overall():
    meter = QualityMeter(["car", "ship", "tank"])
    meter.add(1, 90, 100)  # a large ship, well labeled
    meter.add(0, 1, 4)  # two small cars, poorly
    meter.add(0, 2, 4)
    assert meter.overall.miou_i == pytest.approx((0.9 + 0.25 + 0.5) / 3)
    assert meter.overall.miou_p == pytest.approx(93 / 108)  # the ship's pixels dominate
    per_class = meter.per_class()
    assert list(per_class) == ["car", "ship"]  # classes without instances are not reported
    assert per_class["car"]["mIoU_I"] == pytest.approx(0.375) and per_class["car"]["mIoU_P"] == pytest.approx(3 / 8)
    assert per_class["ship"]["instances"] == 1


@pytest.mark.parametrize("intersection,union", [(1, 0), (5, 4), (-1, 3)])
def test_impossible_counts_are_refused(intersection, union):
    with pytest.raises(ValueError, match="0 <= I <= U"):
        QualityTotals().add(intersection, union)


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="class id 3"):
        QualityMeter(["a", "b", "c"]).add(3, 1, 2)


def test_intersection_union_of_runs_equals_pixel_counts():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random((2, 13, 17)) < 0.4
        ya, xa, yb, xb = rng.integers(0, 6, 4)
        full_a = np.zeros((24, 30), bool)
        full_b = np.zeros((24, 30), bool)
        full_a[ya : ya + 13, xa : xa + 17] = a
        full_b[yb : yb + 13, xb : xb + 17] = b
        got = rle_intersection_union(crop_to_rle(a, xa, ya, 24, 30), crop_to_rle(b, xb, yb, 24, 30))
        assert got == ((full_a & full_b).sum(), (full_a | full_b).sum())
    with pytest.raises(ValueError, match="different sizes"):
        rle_intersection_union(crop_to_rle(a, 0, 0, 13, 17), crop_to_rle(a, 0, 0, 14, 17))


def test_crop_in_window():
    mask = np.zeros((4, 6), bool)
    mask[1:3, 1:5] = True  # image pixels x 11..14, y 21..22
    crop = MaskCrop(mask, 10, 20)
    inside = crop_in_window(crop, 12, 18, 10, 10)  # the window starts at x 12: x 12..14 remain
    expected = np.zeros((10, 10), bool)
    expected[3:5, 0:3] = True  # image rows 21..22 are window rows 3..4
    np.testing.assert_array_equal(inside.full(10, 10), expected)
    assert crop_in_window(crop, 0, 0, 11, 30) is None  # the window ends before the first pixel
    assert crop_in_window(crop, 15, 0, 10, 30) is None  # only the crop's empty margin is inside
    assert crop_in_window(MaskCrop(np.zeros((0, 0), bool), 0, 0), 0, 0, 5, 5) is None
