"""The geometry the readers and labelers share: pixel-centre rasterisation, clipping, mask boxes."""

from __future__ import annotations

import numpy as np
import pytest

from samrs.geometry import (
    clip_polygon, fill_polygon, mask_hbox, mask_min_area_rect, polygon_area, rasterize_polygon, rotated_rect,
)


def test_rasterize_takes_pixel_centres_exactly():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]])
    np.testing.assert_array_equal(rasterize_polygon(square, 3, 3), [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    # Centres on the left/top edge are in, on the right/bottom edge out: neighbours never overlap.
    left, right = square + [0.5, 0.5], square + [2.5, 0.5]  # x in [0.5, 2.5] and [2.5, 4.5]
    a, b = rasterize_polygon(left, 4, 6), rasterize_polygon(right, 4, 6)
    assert a.sum() == 4 and b.sum() == 4 and not (a & b).any()
    # A thin sliver between two centres covers nothing, a box outside the canvas nothing either.
    assert not rasterize_polygon(np.array([[0.6, 0], [1.4, 0], [1.4, 3], [0.6, 3]]), 3, 3).any()
    assert not rasterize_polygon(square + 10, 3, 3).any()


def test_rasterized_area_matches_polygon_area():
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(300):
        corners = rotated_rect(*rng.uniform(30, 70, 2), *rng.uniform(4, 40, 2), rng.uniform(-np.pi, np.pi))
        errors.append(rasterize_polygon(corners, 100, 100).sum() - polygon_area(corners))
    assert abs(np.mean(errors)) < 0.5  # unbiased: no 1 px band added on any side
    assert np.std(errors) < 5


def test_even_odd_rule_and_colour_canvas():
    bowtie = np.array([[0, 0], [6, 6], [6, 0], [0, 6]])  # self-intersecting: two lobes, centre empty
    mask = rasterize_polygon(bowtie, 6, 6)
    assert mask[:, 2].sum() == 0 and mask[2:4, 0].all() and mask[2:4, 5].all()
    canvas = np.zeros((4, 4, 3), np.uint8)
    fill_polygon(canvas, np.array([[1, 1], [3, 1], [3, 3], [1, 3]]), (9, 8, 7))
    assert (canvas[1:3, 1:3] == (9, 8, 7)).all() and canvas.sum() == 4 * 24


def test_clip_polygon():
    box = rotated_rect(10, 10, 8, 4, 0.0)
    assert polygon_area(clip_polygon(box, 0, 0, 100, 100)) == pytest.approx(32)
    assert polygon_area(clip_polygon(box, 0, 0, 10, 100)) == pytest.approx(16)
    assert clip_polygon(box, 20, 20, 30, 30) is None
    assert clip_polygon(box, 14, 0, 30, 30) is None  # touching along an edge: no area


def test_mask_min_area_rect_covers_the_mask():
    rng = np.random.default_rng(1)
    for _ in range(50):
        mask = rasterize_polygon(rotated_rect(*rng.uniform(20, 40, 2), *rng.uniform(2, 20, 2), rng.uniform(0, 3)), 60, 60)
        if not mask.any():
            continue
        corners = mask_min_area_rect(mask)
        assert np.all(rasterize_polygon(corners, 60, 60)[mask])
        assert corners[:, 0].min() <= mask_hbox(mask)[0] and corners[:, 0].max() >= mask_hbox(mask)[2]
    with pytest.raises(ValueError, match="empty mask"):
        mask_min_area_rect(np.zeros((4, 4), bool))
