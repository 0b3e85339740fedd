"""Tiling: window placement at the border, names, pixel and polygon offsets, clipped areas."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from samrs.classes import subset_classes
from samrs.geometry import hbox_of, polygon_area, rasterize_polygon, rotated_rect
from samrs.scenes import generate_scene
from samrs.sources.dota import DotaSource
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.sources.tiling import Tiling, tile_name, window_starts


def box_object(corners, class_id: int | None = 0, **kwargs) -> ObjectRecord:
    corners = np.asarray(corners, dtype=np.float64)
    return ObjectRecord("plane", class_id, corners, hbox_of(corners), **kwargs)


def scene_record(height: int, width: int, seed: int) -> tuple[np.ndarray, ImageRecord]:
    scene = generate_scene("sota", (height, width), num_objects=(25, 30), seed=seed, name=f"S{seed}")
    objects = [box_object(o.corners, o.class_id) for o in scene.objects]
    return scene.image, ImageRecord(scene.name, None, width, height, objects, source="generated")


def source_of(record: ImageRecord, obj: ObjectRecord) -> ObjectRecord:
    return record.objects[obj.extras["source_index"]]


@pytest.mark.parametrize(
    ("length", "border", "starts"),
    [
        (2000, "shift", [0, 824, 976]),  # the last window ends at the border
        (2000, "pad", [0, 824, 1648]),  # the last window keeps its stride and is padded
        (1848, "shift", [0, 824]),  # windows fit exactly: both borders agree
        (1848, "pad", [0, 824]),
        (1024, "shift", [0]),
        (700, "pad", [0]),  # smaller than the window: one padded window
        (1100, "shift", [0, 76]),
        (1100, "pad", [0, 824]),
    ],
)
def test_window_starts(length, border, starts):
    assert window_starts(length, 1024, 824, border) == starts


def test_windows_and_names_follow_the_convention():
    tiling = Tiling(size=1024, gap=200)
    assert tiling.windows(2000, 1100) == [(0, 0), (824, 0), (976, 0), (0, 76), (824, 76), (976, 76)]
    assert tile_name("P0706", 1024, 87, 158) == "P0706__1024__87___158"
    assert Tiling().windows(5000, 3000) == [(0, 0)]


@pytest.mark.parametrize("kwargs", [dict(size=512, gap=512), dict(size=512, gap=-1),
                                    dict(size=512, border="wrap"), dict(size=512, min_visible=1.5)])
def test_invalid_tiling_is_refused(kwargs):
    with pytest.raises(ValueError, match="tiling"):
        Tiling(**kwargs)


def test_untiled_keeps_the_record_and_the_image():
    image, record = scene_record(90, 120, seed=1)
    assert Tiling().tile(record) == [record]
    assert Tiling().crop(image, record) is image


@pytest.mark.parametrize("border", ["shift", "pad"])
def test_tile_offsets_map_tiles_back_to_the_source(border):
    image, record = scene_record(300, 470, seed=4)
    tiling = Tiling(size=128, gap=30, border=border, pad_value=7, min_visible=0.0)
    tiles = tiling.tile(record)
    assert [t.offset for t in tiles] == tiling.windows(470, 300)
    for tile in tiles:
        x, y = tile.offset
        assert tile.name == f"S4__128__{x}___{y}" and (tile.width, tile.height) == (128, 128)
        assert tile.extras["source_name"] == "S4" and tile.extras["source_size"] == [470, 300]
        # pixels: tile (u, v) is source (u + x, v + y); beyond the image, the pad value
        pixels = tiling.crop(image, tile)
        inside = image[y : y + 128, x : x + 128]
        h, w = inside.shape[:2]
        assert pixels.shape == (128, 128, 3)
        np.testing.assert_array_equal(pixels[:h, :w], inside)
        assert (pixels[h:] == 7).all() and (pixels[:, w:] == 7).all()
        # objects: the tile region moved back by the offset is the source box clipped to the window
        window = shapely.box(x, y, x + w, y + h)
        for obj in tile.objects:
            source = source_of(record, obj)
            expected = shapely.Polygon(source.corners).intersection(window)
            assert expected.symmetric_difference(shapely.Polygon(obj.region() + [x, y])).area < 1e-6
            if not obj.truncated:
                np.testing.assert_allclose(obj.corners + [x, y], source.corners)
                np.testing.assert_allclose(obj.hbox + [x, y, x, y], source.hbox)


def test_every_object_crossing_a_window_is_in_its_tile():
    _, record = scene_record(300, 470, seed=5)
    for tile in Tiling(size=128, gap=30, min_visible=0.0).tile(record):
        x, y = tile.offset
        window = shapely.box(x, y, x + 128, y + 128)
        crossing = {i for i, o in enumerate(record.objects) if shapely.Polygon(o.corners).intersection(window).area > 0}
        assert sorted(o.extras["source_index"] for o in tile.objects) == sorted(crossing)


def test_clipped_polygon_areas_add_up():
    """Windows that partition the image (gap 0, size dividing it) split every object's area."""
    rng = np.random.default_rng(1)
    objects = []
    while len(objects) < 30:
        corners = rotated_rect(*rng.uniform(20, 380, 2), *rng.uniform(10, 150, 2), rng.uniform(0, np.pi))
        if corners.min() >= 0 and corners.max() <= 400:
            objects.append(box_object(corners))
    record = ImageRecord("R", None, 400, 400, objects)
    tiles = Tiling(size=100, gap=0, min_visible=0.0).tile(record)
    assert len(tiles) == 16
    total = np.zeros(len(objects))
    for tile in tiles:
        for obj in tile.objects:
            total[obj.extras["source_index"]] += polygon_area(obj.region())
    np.testing.assert_allclose(total, [polygon_area(o.corners) for o in objects], rtol=1e-9)
    assert sum(o.truncated for t in tiles for o in t.objects) > 10  # the test does cut objects


def test_min_visible_keeps_or_drops_and_marks_truncated():
    obj = box_object([[400, 100], [700, 100], [700, 200], [400, 200]], difficult=1)
    record = ImageRecord("I", None, 1024, 300, [obj])
    tiling = dict(size=512, gap=0, border="pad")
    left, right = Tiling(**tiling, min_visible=0.5).tile(record)[:2]
    assert left.objects == []  # 112 of 300 px wide: 37% visible
    (cut,) = right.objects  # 188 of 300: 63%
    assert cut.truncated and cut.difficult == 1
    assert cut.extras["visible_fraction"] == pytest.approx(188 / 300, abs=1e-4)
    np.testing.assert_allclose(cut.hbox, [0, 100, 188, 200])
    assert polygon_area(cut.polygon) == pytest.approx(188 * 100)
    # the rotated box of the visible part covers it, as a labeler rasterises both
    assert np.all(rasterize_polygon(cut.corners, 512, 512)[rasterize_polygon(cut.polygon, 512, 512)])
    both = Tiling(**tiling, min_visible=0.3).tile(record)
    assert [len(t.objects) for t in both] == [1, 1]


def test_a_bow_tie_box_is_clipped_as_its_convex_hull():
    bow_tie = box_object([[10, 10], [90, 90], [90, 10], [10, 90]])
    tiles = Tiling(size=64, gap=0, border="pad", min_visible=0.0).tile(ImageRecord("B", None, 100, 100, [bow_tie]))
    (clipped,) = tiles[0].objects
    assert polygon_area(clipped.polygon) == pytest.approx(54 * 54)


def test_real_dota_image_is_cut_into_the_expected_tiles(samples_dir):
    source = DotaSource(samples_dir / "dota_devkit" / "example", subset_classes("sota"), split=None)
    problems = []
    items = {i.name: i for i in source.items(problems.append)}
    assert set(items) == {"P0706", "P1888"}  # the other five labelTxt files have no image
    record = source.read(items["P0706"], problems.append)
    assert (record.width, record.height) == (1111, 1182)
    tiles = Tiling(size=1024, gap=200).tile(record)
    assert [t.name for t in tiles] == ["P0706__1024__0___0", "P0706__1024__87___0",
                                       "P0706__1024__0___158", "P0706__1024__87___158"]
    # the four tiles overlap so much that every object is whole in at least one of them; one object
    # reaches a pixel past the image's right border, so the image cuts it already
    cut = [i for i, o in enumerate(record.objects) if o.truncated]
    assert cut == [0] and record.objects[0].extras["visible_fraction"] > 0.99
    whole = {o.extras["source_index"] for t in tiles for o in t.objects if not o.truncated}
    assert whole == set(range(len(record.objects))) - set(cut) and len(whole) > 500
    assert any(o.extras["source_index"] == 0 for o in tiles[-1].objects)  # still labeled, as truncated
