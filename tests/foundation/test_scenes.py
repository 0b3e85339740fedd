"""Generated scenes: deterministic, class-shaped objects, annotations that agree with exact masks."""

from __future__ import annotations

import numpy as np
import pytest

from samrs.classes import subset_classes
from samrs.geometry import mask_hbox, polygon_area, rasterize_polygon
from samrs.scenes import generate_scene, generate_scenes
from samrs.scenes.shapes import class_color, family_of


def test_same_seed_same_scene_other_seed_other_scene():
    a, b = generate_scene("sota", 96, (5, 8), seed=7), generate_scene("sota", 96, (5, 8), seed=7)
    c = generate_scene("sota", 96, (5, 8), seed=8)
    assert np.array_equal(a.image, b.image)
    assert [o.class_name for o in a.objects] == [o.class_name for o in b.objects]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects))
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, (96, 160), 256])
def test_annotations_agree_with_exact_masks(size):
    scene = generate_scene("fast", size, (6, 12), seed=1)
    h, w = (size, size) if isinstance(size, int) else size
    assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
    assert scene.objects, "a scene of this size must hold at least one object"
    union = np.zeros((h, w), int)
    for obj in scene.objects:
        assert obj.mask.shape == (h, w) and obj.area > 0
        assert np.array_equal(obj.hbox, mask_hbox(obj.mask))
        # The rotated box is the minimum-area rectangle around the mask's pixels: it covers them all
        # and is tight (a rectangle object fills most of it).
        assert not (obj.mask & ~rasterize_polygon(obj.corners, h, w)).any()
        assert obj.area <= polygon_area(obj.corners) <= 4 * obj.area + 40
        union += obj.mask
    assert union.max() == 1, "objects must not overlap"
    label = scene.label_map()
    assert set(np.unique(label)) <= {o.class_id for o in scene.objects} | {255}
    assert (label != 255).sum() == sum(o.area for o in scene.objects)


def test_each_object_is_painted_in_its_class_colour():
    scene = generate_scene("sota", 256, (8, 8), seed=4)
    for obj in scene.objects:
        inner = obj.mask & np.roll(obj.mask, 1, 0) & np.roll(obj.mask, -1, 0) & np.roll(obj.mask, 1, 1) & np.roll(obj.mask, -1, 1)
        if inner.sum() < 10:
            continue
        mean = scene.image[inner].mean(axis=0)
        assert np.abs(mean - class_color(obj.class_name)).max() < 30, obj.class_name


@pytest.mark.parametrize("subset", ["sota", "sior", "fast", "hrsc2016"])
def test_every_class_can_be_drawn(subset):
    classes = subset_classes(subset)
    for i, name in enumerate(classes.names):
        scene = generate_scene(subset, 192, 2, seed=i, classes=[name])
        assert scene.objects and all(o.class_name == name and o.class_id == i for o in scene.objects)


def _fill_ratio(obj) -> float:
    x0, y0, x1, y1 = obj.hbox
    return obj.area / ((x1 - x0) * (y1 - y0))


def test_shapes_depend_on_the_class():
    def one(name):
        return generate_scene("sota", 256, 1, seed=0, classes=[name]).objects[0]

    tank, plane, vehicle, court = one("storage-tank"), one("plane"), one("small-vehicle"), one("tennis-court")
    assert family_of("storage-tank").name == "disk" and 0.7 < _fill_ratio(tank) < 0.85  # pi/4 for a disk
    assert family_of("plane").name == "plane" and _fill_ratio(plane) < 0.6  # a cross fills little of its box
    assert vehicle.area < court.area  # vehicles are small
    w, h = sorted(np.linalg.norm(vehicle.corners[[1, 2]] - vehicle.corners[[0, 1]], axis=1))
    assert h / w > 1.5  # vehicles are elongated rectangles
    assert family_of("Liquid Cargo Ship").name == "ship" and family_of("Boeing737").name == "plane"


def test_generate_scenes_names_and_count():
    scenes = list(generate_scenes("sior", 3, seed=2, size=64, num_objects=2))
    assert [s.name for s in scenes] == ["sior_000000", "sior_000001", "sior_000002"]
