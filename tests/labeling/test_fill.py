"""box_fill and polygon_fill: masks are the annotated shapes rasterised, crops placed right."""

from __future__ import annotations

import numpy as np

from samrs.geometry import hbox_of, rasterize_polygon, rotated_rect
from samrs.labeling.fill import BoxFillLabeler, PolygonFillLabeler, box_corners
from samrs.labeling.overlap import paint_label_map
from samrs.scenes import generate_scene
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.sources.tiling import Tiling


def obj(corners, class_id=3, polygon=None) -> ObjectRecord:
    corners = np.asarray(corners, dtype=np.float64)
    return ObjectRecord("x", class_id, corners, hbox_of(corners), polygon=polygon)


def scene_tiles():
    """Tiles of a generated scene (objects cut at tile borders) and their pixels."""
    scene = generate_scene("sota", (200, 260), num_objects=(20, 25), seed=7)
    objects = [obj(o.corners, o.class_id) for o in scene.objects]
    record = ImageRecord("S", None, 260, 200, objects)
    tiling = Tiling(size=100, gap=20, min_visible=0.2)
    return [(tiling.crop(scene.image, t), t) for t in tiling.tile(record)]


def test_polygon_fill_masks_are_the_rasterised_regions():
    pairs = scene_tiles()
    images, records = zip(*pairs)
    results = PolygonFillLabeler().label(images, records)
    assert sum(len(r) for r in results) > 20
    for record, masks in zip(records, results):
        assert [m.object_index for m in masks] == list(range(len(record.objects)))
        for m in masks:
            o = record.objects[m.object_index]
            np.testing.assert_array_equal(m.full(100, 100), rasterize_polygon(o.region(), 100, 100))
            assert m.class_id == o.class_id and m.prompt == "polygon_fill" and m.score is None


def test_polygon_fill_label_map_equals_painting_the_polygons_smaller_on_top():
    for image, record in scene_tiles():
        (masks,) = PolygonFillLabeler().label([image], [record])
        expected = np.full((100, 100), 255, np.uint8)
        full = [rasterize_polygon(o.region(), 100, 100) for o in record.objects]
        for i in sorted(range(len(full)), key=lambda i: -full[i].sum()):  # stable: ties in file order
            expected[full[i]] = record.objects[i].class_id
        np.testing.assert_array_equal(paint_label_map(masks, 100, 100), expected)


def test_box_fill_masks_are_the_horizontal_boxes():
    rotated = obj(rotated_rect(40, 30, 50, 12, 0.6))
    (masks,) = BoxFillLabeler().label([np.zeros((60, 80, 3), np.uint8)], [ImageRecord("B", None, 80, 60, [rotated])])
    (m,) = masks
    np.testing.assert_array_equal(m.full(60, 80), rasterize_polygon(box_corners(rotated.hbox), 60, 80))
    assert m.area > rasterize_polygon(rotated.corners, 60, 80).sum()  # the box covers more than the object
    assert m.prompt == "box_fill"


def test_objects_without_class_or_pixels_get_no_mask_and_border_objects_are_cut():
    image = np.zeros((50, 50, 3), np.uint8)
    objects = [
        obj([[5, 5], [20, 5], [20, 20], [5, 20]], class_id=None),  # unknown class
        obj([[60, 60], [70, 60], [70, 70], [60, 70]]),  # outside the image
        obj([[40, 40], [60, 40], [60, 60], [40, 60]]),  # reaches past the border
    ]
    for labeler in (PolygonFillLabeler(), BoxFillLabeler()):
        (masks,) = labeler.label([image], [ImageRecord("E", None, 50, 50, objects)])
        (m,) = masks
        assert m.object_index == 2 and (m.x0, m.y0) == (39, 39)
        np.testing.assert_array_equal(m.full(50, 50), rasterize_polygon(objects[2].corners, 50, 50))
        assert m.area == 100
