"""source=coco and source=yolo_obb read generated scenes as the objects were drawn; bad input is
reported; the configs (source=geo|coco|yolo_obb) build their readers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from geo_helpers import cpu_trainer
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from samrs.geometry import rasterize_polygon
from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.scenes.formats import format_scenes, grown, write_format
from samrs.sources.coco import CocoSource
from samrs.sources.yolo_obb import YoloObbSource
from samrs.utils.hydra import config_dir
from samrs.utils.io import write_text

SCENES = dict(count=3, size=160, seed=4, num_objects=(3, 6))


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {fmt: write_format(fmt, root / fmt, **SCENES) for fmt in ("coco", "yolo_obb")}


def read_all(source):
    problems = []
    records = [source.read(item, problems.append) for item in source.items(problems.append)]
    return records, problems


def covers_the_drawn_masks(records, fmt):
    """Each object is the drawn object's rotated box as written (grown by 0.01 px, rounded), and its
    region, rasterised, covers the drawn mask."""
    for record, scene in zip(records, format_scenes(fmt, **SCENES)):
        assert record.name == scene.name and len(record.objects) == len(scene.objects)
        for obj, drawn in zip(record.objects, scene.objects):
            assert obj.class_id == drawn.class_id
            np.testing.assert_allclose(obj.region(), grown(drawn.corners, 0.01), atol=0.006)
            assert (rasterize_polygon(obj.region(), record.height, record.width) | ~drawn.mask).all()


def test_coco_reads_boxes_and_polygon_segmentations(formats):
    records, problems = read_all(CocoSource(formats["coco"] / "annotations.json", formats["coco"] / "images"))
    assert problems == [] and len(records) == 3
    covers_the_drawn_masks(records, "coco")
    assert all(r.objects[0].hbox[2] > r.objects[0].hbox[0] for r in records)


def test_yolo_obb_reads_normalised_corners(formats):
    source = YoloObbSource(formats["yolo_obb"])
    assert source.classes.names[0] == "large-vehicle"  # names from data.yaml
    records, problems = read_all(source)
    assert problems == [] and len(records) == 3
    covers_the_drawn_masks(records, "yolo_obb")


def test_bad_input_is_reported_with_file_and_line(tmp_path):
    write_format("coco", tmp_path / "coco", count=1, size=96, seed=1, num_objects=(2, 3))
    path = tmp_path / "coco" / "annotations.json"
    coco = json.loads(path.read_text())
    coco["annotations"] += [
        {"id": 901, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 1},
        {"id": 902, "image_id": 1, "category_id": 77, "bbox": [1, 1, 5, 5]},
        {"id": 903, "image_id": 1, "category_id": 1, "bbox": [300, 300, 5, 5]},
        {"id": 904, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    coco["images"].append({"id": 2, "file_name": "gone.png", "width": 9, "height": 9})
    path.write_text(json.dumps(coco))
    records, problems = read_all(CocoSource(path, tmp_path / "coco" / "images"))
    kinds = {(p.kind, p.line) for p in problems}
    assert {("crowd_region", 901), ("unknown_class", 902), ("out_of_image_box", 903), ("missing_image", 904),
            ("missing_image", None)} <= kinds
    assert len(records) == 1

    root = tmp_path / "yolo"
    write_format("yolo_obb", root, count=1, size=96, seed=1, num_objects=(2, 3))
    label = next((root / "labels" / "train").glob("*.txt"))
    write_text(label, label.read_text() + "3 0.1 0.1\n99 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n")
    write_text(root / "labels" / "train" / "orphan.txt", "")
    _, problems = read_all(YoloObbSource(root))
    lines = len(label.read_text().splitlines())
    assert {(p.kind, p.line) for p in problems} >= {("malformed_line", lines - 1), ("unknown_class", lines),
                                                    ("missing_image", None)}


def test_a_source_without_crs_writes_png(formats, tmp_path):
    source = CocoSource(formats["coco"] / "annotations.json")
    source.root = formats["coco"] / "images"
    meta = run_labeling(source, PolygonFillLabeler(), tmp_path / "out", output_format="auto", progress=False,
                        make_trainer=cpu_trainer)
    assert meta["output_format"] == "png" and meta["counts"]["images"] == 3
    assert len(list((tmp_path / "out" / "labels").glob("*.png"))) == 3
    assert not (tmp_path / "out" / "instances.gpkg").exists()


@pytest.mark.parametrize("overrides", [
    ["source=geo", "source.images={scenes}/images", "source.vectors={scenes}/boxes.geojson"],
    ["source=coco", "source.annotations={coco}/annotations.json", "source.root={coco}/images"],
    ["source=yolo_obb", "source.root={yolo}"],
])
def test_source_configs_compose_and_build(overrides, geo_scenes, formats):
    paths = {"scenes": geo_scenes, "coco": formats["coco"], "yolo": formats["yolo_obb"]}
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("label", overrides=[o.format(**paths) for o in overrides] + ["labeler=polygon_fill",
                                                                                  "output_dir=x"])
    source = instantiate(cfg.source)
    assert source.items(lambda p: None) and cfg.output_format == "auto" and cfg.output.bands == "rgb"
    assert (cfg.get("tiling") or {}).get("size") == (1024 if source.name == "geo" else None)


def test_geo_vectors_per_image_with_numeric_classes(geo_scenes, tmp_path):
    import geopandas as gpd

    from samrs.sources.geo import GeoSource

    boxes = gpd.read_file(geo_scenes / "boxes.geojson")
    codes = {name: 3 + 7 * k for k, name in enumerate(sorted(set(boxes["class"])))}  # 3, 10, 17, ...
    folder = tmp_path / "boxes"
    folder.mkdir()
    for scene, part in boxes.groupby("scene"):
        part.assign(code=part["class"].map(codes))[["code", "geometry"]].to_file(folder / f"{scene}.gpkg")
    source = GeoSource(geo_scenes / "images", f"{folder}/{{name}}.gpkg", class_field="code")
    assert list(source.classes.names) == [str(c) for c in sorted(codes.values())]  # by value: 3, 10, 17
    problems = []
    items = source.items(problems.append)
    assert [i.name for i in items] == ["scene_000", "scene_001"] and problems == []
    record = source.read(items[0], problems.append)
    assert {o.name for o in record.objects} <= {str(c) for c in codes.values()} and record.objects
    (folder / "scene_001.gpkg").unlink()
    problems = []
    items = GeoSource(geo_scenes / "images", folder, class_field="code").items(problems.append)
    assert [i.name for i in items] == ["scene_000"]
    assert [(p.kind, Path(p.path).name) for p in problems] == [("missing_annotation", "scene_001.tif")]
    with pytest.raises(FileNotFoundError, match="source.vectors"):
        GeoSource(geo_scenes / "images", tmp_path / "nowhere", classes=["a"])
