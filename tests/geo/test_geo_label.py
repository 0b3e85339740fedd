"""Labeling GeoTIFF scenes from boxes in another CRS: tiles keep their place on Earth, labels agree
with rasterio's rasterisation of the same polygons, instances become a GeoPackage."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from geo_helpers import TILING, label_geo
from rasterio.features import rasterize
from rasterio.windows import Window

from samrs.labeling.job import UsageError, WorkItem, work_items
from samrs.sources.geo import GeoSource
from samrs.utils.geo import Stretch, raster_info, read_window, rgb_bands, to_uint8
from samrs.utils.io import read_rgb


def scene_boxes(scenes: Path, crs) -> gpd.GeoDataFrame:
    return gpd.read_file(scenes / "boxes.geojson").to_crs(crs)


def expected_labels(boxes: gpd.GeoDataFrame, classes: list[str], transform: Affine, shape, valid) -> np.ndarray:
    """rasterio's rasterisation of the polygons over a tile, the smaller polygon on top (painted last),
    nodata pixels unlabeled."""
    order = boxes.assign(area=boxes.area).sort_values("area", ascending=False)
    shapes = [(geom, classes.index(c)) for geom, c in zip(order.geometry, order["class"])]
    out = rasterize(shapes, out_shape=shape, transform=transform, fill=255, dtype="uint8")
    out[~valid] = 255
    return out


def test_label_tiles_keep_their_window_of_the_scene(geo_scenes, geo_labeled):
    """The done-when test: every label tile has its window's transform and the scene's CRS, and its
    pixels agree with rasterio.features.rasterize of the same polygons (IoU >= 0.98 per class)."""
    out, meta = geo_labeled
    classes = meta["classes"]
    assert classes == sorted(set(gpd.read_file(geo_scenes / "boxes.geojson")["class"]))  # derived, sorted
    inter = np.zeros(len(classes))
    union = np.zeros(len(classes))
    tiles = 0
    for scene_path in sorted((geo_scenes / "images").glob("*.tif")):
        with rasterio.open(scene_path) as scene:
            boxes = scene_boxes(geo_scenes, scene.crs)
            for x, y in TILING.windows(scene.width, scene.height):
                name = f"{scene_path.stem}__256__{x}___{y}"
                window = Window(x, y, 256, 256)
                with rasterio.open(out / "labels" / f"{name}.tif") as label_tif:
                    assert label_tif.crs == scene.crs
                    assert label_tif.transform == scene.window_transform(window)
                    assert label_tif.nodata == 255 and label_tif.dtypes == ("uint8",)
                    label = label_tif.read(1)
                with rasterio.open(out / "images" / f"{name}.tif") as image_tif:
                    assert image_tif.transform == scene.window_transform(window) and image_tif.crs == scene.crs
                    np.testing.assert_array_equal(image_tif.read(), scene.read(window=window))  # every band, 16 bit
                valid = scene.dataset_mask(window=window) > 0
                expected = expected_labels(boxes, classes, scene.window_transform(window), (256, 256), valid)
                assert (label[~valid] == 255).all()  # nodata is never labeled
                for k in range(len(classes)):
                    inter[k] += ((label == k) & (expected == k)).sum()
                    union[k] += ((label == k) | (expected == k)).sum()
                tiles += 1
    assert tiles == meta["counts"]["images"] == 2 * len(TILING.windows(700, 600))
    present = union > 0
    iou = inter[present] / union[present]
    assert present.sum() >= 5 and iou.min() >= 0.98, dict(zip(np.array(classes)[present], iou.round(4)))


def test_instances_geopackage_has_one_polygon_per_instance(geo_scenes, geo_labeled):
    out, meta = geo_labeled
    coco = json.loads((out / "instances.json").read_text())
    frame = gpd.read_file(out / "instances.gpkg")
    with rasterio.open(next((geo_scenes / "images").glob("*.tif"))) as scene:
        assert frame.crs == scene.crs
        pixel_area = abs(scene.transform.a * scene.transform.e)
    assert len(frame) == len(coco["annotations"]) == meta["counts"]["instances"] > 0
    by_id = {a["id"]: a for a in coco["annotations"]}
    for row in frame.itertuples():
        ann = by_id[row.annotation_id]
        assert row.class_id == ann["category_id"] and row.class_name == meta["classes"][ann["category_id"]]
        assert row.geometry.area == pytest.approx(ann["area"] * pixel_area)  # traced along pixel edges
        assert row.source_image == row.image.split("__")[0]
    image = coco["images"][0]
    assert image["crs"] == "EPSG:32633" and len(image["transform"]) == 6


def test_report_meta_and_resume(geo_scenes, geo_labeled):
    out, meta = geo_labeled
    report = json.loads((out / "report.json").read_text())
    nodata = [p for p in report["problems"] if p["kind"] == "nodata_box"]
    assert len(nodata) == 2 and all(p["path"].endswith("boxes.geojson") and p["line"] for p in nodata)
    assert report["counts"]["source_items"] == 2
    assert meta["output_format"] == "geotiff" and meta["output_bands"] == "all"
    assert len(meta["band_stats"]["mean"]) == 4 and min(meta["band_stats"]["std"]) > 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()}
    again = label_geo(geo_scenes, out)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "labels").iterdir()} == before  # nothing relabeled
    assert again["counts"] == meta["counts"]
    with pytest.raises(UsageError, match="output_bands"):
        label_geo(geo_scenes, out, output_bands="rgb")


def test_rgb_output_is_the_stretched_view_sam_saw(geo_scenes, tmp_path):
    label_geo(geo_scenes, tmp_path / "rgb", output_bands="rgb", output_format="png")
    scene = sorted((geo_scenes / "images").glob("*.tif"))[0]
    info = raster_info(scene)
    bands = rgb_bands(info)
    assert bands == (3, 2, 1)  # blue, green, red, nir: red/green/blue found by colour interpretation
    limits = Stretch().limits(info, bands)
    pixels, valid = read_window(scene, bands, 200, 200, 256, 256)
    expected = to_uint8(pixels, limits)
    expected[~valid] = 0
    np.testing.assert_array_equal(read_rgb(tmp_path / "rgb" / "images" / f"{scene.stem}__256__200___200.png"), expected)


def test_work_items_bound_memory_by_tiles(geo_scenes):
    source = GeoSource(geo_scenes / "images", geo_scenes / "boxes.geojson")
    items = source.items(lambda p: None)
    work = work_items(source, items, TILING, tiles_per_item=4)
    per_scene = len(TILING.windows(700, 600))
    assert len(work) == 2 * -(-per_scene // 4) and all(len(w.offsets) <= 4 for w in work)
    assert sorted(o for w in work if w.item.name == "scene_000" for o in w.offsets) == sorted(TILING.windows(700, 600))
    assert work_items(source, items, type(TILING)(), 4) == [WorkItem(i) for i in items]  # untiled: one item each


def test_generated_scenes_are_projected_16_bit_with_boxes_in_wgs84(geo_scenes):
    boxes = gpd.read_file(geo_scenes / "boxes.geojson")
    assert boxes.crs.to_epsg() == 4326 and set(boxes["scene"]) == {"scene_000", "scene_001"}
    for path in sorted((geo_scenes / "images").glob("*.tif")):
        with rasterio.open(path) as scene:
            assert scene.crs.to_epsg() == 32633 and scene.count == 4 and scene.dtypes[0] == "uint16"
            assert scene.nodata == 0 and [c.name for c in scene.colorinterp][:3] == ["blue", "green", "red"]
            pixels, mask = scene.read(), scene.dataset_mask()
            corner = np.add.outer(np.arange(scene.height) / scene.height, np.arange(scene.width) / scene.width) < 0.15
            np.testing.assert_array_equal(mask == 0, corner)  # the nodata triangle, and only there
            assert pixels[:, ~corner].min() >= 1 and pixels.max() < 4096
            own = boxes[boxes["scene"] == path.stem].to_crs(scene.crs)
            inverse = ~scene.transform
            for geometry in own.geometry:  # back in pixels: inside the scene, to far below a pixel
                coords = np.asarray(geometry.exterior.coords)
                xs, ys = inverse @ (coords[:, 0], coords[:, 1])
                assert xs.min() > -1e-6 and ys.min() > -1e-6 and xs.max() < scene.width and ys.max() < scene.height
