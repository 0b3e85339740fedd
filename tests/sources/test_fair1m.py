"""FAIR1M labelXml reader: the real XMLs (with corners outside their images), generated scenes, and
bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs.classes import subset_classes
from samrs.geometry import clip_polygon, hbox_of, polygon_area
from samrs.sources.base import BadInputError, raise_problem
from samrs.sources.fair1m import Fair1mSource, fair1m_name

FAST = subset_classes("fast")


@pytest.fixture
def real_fair1m(samples_dir, tmp_path) -> Path:
    """The real label XMLs (linked) beside blank .tif images of the sizes the XMLs give."""
    for split in ("train/part1", "validation"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "labelXml").symlink_to(samples_dir / "fair1m_labelxml" / split / "labelXml")
        for xml in (tmp_path / split / "labelXml").glob("*.xml"):
            root = ET.parse(xml).getroot()
            size = int(root.findtext("size/width")), int(root.findtext("size/height"))
            Image.new("RGB", size).save(tmp_path / split / "images" / f"{xml.stem}.tif")
    return tmp_path


def file_boxes(path: Path) -> list[tuple[str, np.ndarray]]:
    """(name, 4 corners) of every object of a label XML, parsed independently of the reader."""
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        points = [[float(v) for v in p.text.split(",")] for p in obj.iter("point")]
        out.append((obj.findtext("possibleresult/name"), np.array(points[:4])))
    return out


def test_real_files(real_fair1m, problems):
    with pytest.raises(ValueError, match="occurs twice"):  # train/part1/0 and validation/0
        Fair1mSource(real_fair1m, FAST, split=["train/part1", "validation"]).items(problems)
    source = Fair1mSource(real_fair1m, FAST, split="train/part1")
    records = [source.read(item, problems) for item in source.items(problems)]
    assert [r.name for r in records] == ["0", "1", "10"]
    for record in records:
        boxes = file_boxes(record.annotation_path)
        inside = [polygon_area(clip_polygon(c, 0, 0, record.width, record.height)) / polygon_area(c)
                  if polygon_area(c) >= 1 else 0 for _, c in boxes]
        # (1.xml's trucks at lines 66 and 306 are 68 % and 50 % inside their image: dropped as a tile drops them)
        usable = [(n, c) for (n, c), share in zip(boxes, inside) if share >= 0.7]
        assert Counter(o.name for o in record.objects) == Counter(n for n, _ in usable)
        assert [o.class_id for o in record.objects] == [FAST.id_of(n) for n, _ in usable]
        for obj, (_, corners) in zip(record.objects, usable):
            np.testing.assert_array_equal(obj.corners, corners)
            if obj.polygon is None:
                np.testing.assert_array_equal(obj.hbox, hbox_of(corners))
            else:
                assert np.all(obj.hbox >= 0) and np.all(obj.hbox[2:] <= (record.width, record.height))
        assert record.extras == {"filename": f"{record.name}.tif", "origin": "GF2/GF3", "version": "1.0"}
    ship = records[0].objects[0]
    assert ship.name == "Liquid Cargo Ship" and FAST.names[ship.class_id] == "Liquid-Cargo-Ship"
    # 0.xml's third ship reaches y = 1531 in a 1500 px image: clipped, reported, kept.
    assert problems.where() == {("out_of_image_box", "0.xml", 51), ("out_of_image_box", "1.xml", 66),
                                ("out_of_image_box", "1.xml", 306), ("out_of_image_box", "10.xml", 81),
                                ("degenerate_box", "1.xml", 291)}
    assert records[0].objects[2].hbox[3] == 1500
    problems.clear()
    validation = Fair1mSource(real_fair1m, FAST, split="validation")
    [record] = [validation.read(item, problems) for item in validation.items(problems)]
    assert [o.name for o in record.objects] == ["Dry Cargo Ship"] and problems == []


def test_generated_scenes_match_masks(generated, scenes, problems, covers):
    source = Fair1mSource(generated["fair1m"], FAST)
    records = [source.read(item, problems) for item in source.items(problems)]
    assert problems == [] and sorted(r.name for r in records) == sorted(scenes["fair1m"])
    for record in records:
        truth = scenes["fair1m"][record.name].objects
        assert [o.name for o in record.objects] == [fair1m_name(t.class_name) for t in truth]
        assert [o.class_id for o in record.objects] == [t.class_id for t in truth]
        for obj, t in zip(record.objects, truth):
            assert covers(obj.corners, t.mask)
            np.testing.assert_array_equal(obj.hbox, hbox_of(obj.corners))
    xml = next((generated["fair1m"] / "train/labelXml").glob("*.xml"))
    for obj in ET.parse(xml).getroot().iter("object"):
        points = [p.text for p in obj.iter("point")]
        assert len(points) == 5 and points[0] == points[4]


def test_fair1m_spelling():
    assert fair1m_name("Liquid-Cargo-Ship") == "Liquid Cargo Ship"
    assert fair1m_name("other-airplane") == "other-airplane"
    assert all(FAST.id_of(fair1m_name(n)) == i for i, n in enumerate(FAST.names))


def _object(name: str, points: list[str]) -> str:
    pts = "".join(f"<point>{p}</point>" for p in points)
    return f"\t\t<object>\n\t\t\t<possibleresult><name>{name}</name></possibleresult>\n\t\t\t<points>{pts}</points>\n\t\t</object>\n"


def test_bad_objects_reported_with_lines(tmp_path, problems):
    square = ["10,10", "30,10", "30,30", "10,30"]
    # Object k starts on line 4 + 4k, its <name> one line below, its <points> two.
    objects = [_object("Small Car", square + ["10,10"]),  # fine
               _object("Small Car", square[:3]),  # points on line 10: three points
               _object("Small Car", square + ["11,10"]),  # 14: five points that do not close
               _object("Small Car", ["10;10"] + square[1:]),  # 18: not x,y
               _object("Spaceship", square),  # object on line 20: unknown class
               _object("", square)]  # name on line 25: empty
    xml = "<annotation>\n\t<size><width>50</width><height>50</height></size>\n\t<objects>\n" + "".join(objects) + "\t</objects>\n</annotation>"
    (tmp_path / "train/labelXml").mkdir(parents=True)
    (tmp_path / "train/images").mkdir(parents=True)
    (tmp_path / "train/labelXml/1.xml").write_text(xml)
    (tmp_path / "train/labelXml/2.xml").write_text("<annotation><objects></annotation>")
    (tmp_path / "train/labelXml/3.xml").write_text(xml)
    for name, size in (("1", 50), ("2", 50), ("4", 50)):
        Image.new("RGB", (size, size)).save(tmp_path / f"train/images/{name}.tif")
    source = Fair1mSource(tmp_path, FAST)
    items = source.items(problems)
    assert problems.where() == {("missing_image", "3.xml", None), ("missing_annotation", "4.tif", None)}
    problems.clear()
    record = source.read(items[0], problems)
    assert [o.name for o in record.objects] == ["Small Car"]
    assert problems.where() == {("malformed_xml", "1.xml", 10), ("malformed_xml", "1.xml", 14),
                                ("malformed_xml", "1.xml", 18), ("unknown_class", "1.xml", 20),
                                ("malformed_xml", "1.xml", 25)}
    problems.clear()
    assert source.read(items[1], problems) is None
    assert problems.where() == {("malformed_xml", "2.xml", 1)}
    with pytest.raises(BadInputError, match=r"1.xml:10: expected 4 corners"):
        source.read(items[0], raise_problem)
