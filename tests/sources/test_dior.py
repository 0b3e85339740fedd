"""DIOR + DIOR-R reader: real XMLs of both kinds paired, generated scenes, and bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs.classes import subset_classes
from samrs.geometry import hbox_of
from samrs.sources.base import BadInputError, raise_problem
from samrs.sources.dior import DiorSource, match_boxes

SIOR = subset_classes("sior")
H_DIR, R_DIR = "Annotations/Horizontal Bounding Boxes", "Annotations/Oriented Bounding Boxes"


@pytest.fixture
def real_dior(samples_dir, tmp_path) -> Path:
    """The release layout around the real XMLs (linked, not copied): image 00001 is DIOR's own,
    00002 and 00003 get blank 800 x 800 stand-ins (their XMLs are real, their images not shipped)."""
    annotations = samples_dir / "rsclip_dior/datasets/DIOR/annotations"
    (tmp_path / "Annotations").mkdir()
    (tmp_path / H_DIR).symlink_to(annotations / "horizontal")
    (tmp_path / R_DIR).symlink_to(annotations / "oriented")
    images = tmp_path / "JPEGImages-trainval"
    images.mkdir()
    (tmp_path / "JPEGImages-test").mkdir()
    (images / "00001.jpg").symlink_to(samples_dir / "mmrotate/tests/data/dior/JPEGImage/00001.jpg")
    for name in ("00002", "00003"):
        Image.new("RGB", (800, 800)).save(images / f"{name}.jpg")
    return tmp_path


def xml_objects(path: Path) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("object"))


def test_real_files_paired(real_dior, problems):
    source = DiorSource(real_dior, SIOR, split=None)
    records = {item.name: source.read(item, problems) for item in source.items(problems)}
    assert problems == []
    assert sorted(records) == ["00001", "00002", "00003"]
    for name, record in records.items():
        horizontal, oriented = xml_objects(real_dior / H_DIR / f"{name}.xml"), xml_objects(real_dior / R_DIR / f"{name}.xml")
        assert Counter(o.name for o in record.objects) == Counter(e.findtext("name") for e in horizontal)
        assert Counter(o.name for o in record.objects) == Counter(e.findtext("name") for e in oriented)
        assert (record.width, record.height) == (800, 800)
        # Every object keeps one horizontal box of the file and one oriented box of the file.
        h_boxes = {tuple(float(e.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")) for e in horizontal}
        r_boxes = {tuple(float(v.text) for v in e.find("robndbox")) for e in oriented}
        assert {tuple(o.hbox) for o in record.objects} == h_boxes
        assert {tuple(o.corners.ravel()) for o in record.objects} == r_boxes
    toll = next(o for o in records["00002"].objects if o.class_id == SIOR.id_of("expressway-toll-station"))
    np.testing.assert_array_equal(toll.hbox, [231, 221, 303, 304])  # DIOR's own H-Box, not the corners' extent
    np.testing.assert_array_equal(hbox_of(toll.corners), [231, 231, 302, 304])
    assert toll.name == "Expressway-toll-station" and toll.extras["angle"] == -9.6
    # The vehicles are listed first in the oriented file and last in the horizontal one.
    vehicles = sorted((o for o in records["00002"].objects if o.name == "vehicle"), key=lambda o: o.hbox[0])
    np.testing.assert_array_equal(vehicles[0].hbox, [49, 231, 67, 242])
    np.testing.assert_array_equal(vehicles[0].corners, [[49, 233], [65, 233], [65, 240], [49, 240]])


def test_oriented_only_mmrotate_sample(samples_dir, problems):
    root = samples_dir / "mmrotate/tests/data/dior"
    source = DiorSource(root, SIOR, split=None, boxes="oriented", image_dirs=["JPEGImage"])
    [item] = source.items(problems)
    record = source.read(item, problems)
    assert problems == [] and [o.name for o in record.objects] == ["golffield"]
    np.testing.assert_array_equal(record.objects[0].hbox, hbox_of(record.objects[0].corners))
    np.testing.assert_array_equal(record.objects[0].hbox, [133, 237, 684, 672])


def test_generated_scenes_match_masks(generated, scenes, problems, covers):
    source = DiorSource(generated["dior"], SIOR)
    items = source.items(problems)
    assert [i.name for i in items] == sorted(scenes["dior"])
    for item in items:
        record = source.read(item, problems)
        truth = scenes["dior"][item.name].objects
        assert Counter(o.class_id for o in record.objects) == Counter(o.class_id for o in truth)
        for obj in record.objects:  # each object with the scene object whose mask extent is its H-Box
            [match] = [t for t in truth if np.array_equal(t.hbox, obj.hbox) and t.class_id == obj.class_id]
            assert covers(obj.corners, match.mask)
    assert problems == []
    text = (generated["dior"] / H_DIR / "00001.xml").read_bytes()
    assert text.startswith(b"<annotation>\r\n\t<filename>00001.jpg</filename>\r\n")
    assert (generated["dior"] / "JPEGImages-test/00003.jpg").is_file()
    test_only = DiorSource(generated["dior"], SIOR, split="test").items(problems)
    assert [i.name for i in test_only] == ["00003", "00004", "00007", "00008"]


def test_generated_names_use_dior_spelling(tmp_path):
    from samrs.scenes.formats import write_dior_scene
    from samrs.scenes.generate import generate_scene

    scene = generate_scene("sior", 96, 3, seed=1, classes=["expressway-toll-station"], name="00009")
    write_dior_scene(scene, tmp_path, "train")
    names = [e.findtext("name") for e in xml_objects(tmp_path / R_DIR / "00009.xml")]
    assert names and set(names) == {"Expressway-toll-station"}


H_XML = """<annotation>
\t<filename>{name}.jpg</filename>
\t<size><width>100</width><height>100</height><depth>3</depth></size>
\t<object><name>vehicle</name><bndbox><xmin>10</xmin><ymin>10</ymin><xmax>20</xmax><ymax>16</ymax></bndbox></object>
\t<object><name>vehicle</name><bndbox><xmin>60</xmin><ymin>60</ymin><xmax>80</xmax><ymax>70</ymax></bndbox></object>
\t<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
\t<object><name>vehicle</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
\t<object><name>ufo</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
\t<object><name>ship</name><bndbox><xmin>30</xmin><ymin>30</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>
"""
R_XML = """<?xml version="1.0" encoding="UTF-8"?>
<annotation>
    <size><width>100</width><height>100</height><depth>3</depth></size>
    <object><name>vehicle</name><robndbox><x_left_top>11</x_left_top><y_left_top>11</y_left_top>
        <x_right_top>19</x_right_top><y_right_top>11</y_right_top><x_right_bottom>19</x_right_bottom>
        <y_right_bottom>15</y_right_bottom><x_left_bottom>11</x_left_bottom><y_left_bottom>15</y_left_bottom>
        </robndbox><angle>0</angle></object>
    <object><name>vehicle</name><robndbox><x_left_top>30</x_left_top><y_left_top>80</y_left_top>
        <x_right_top>40</x_right_top><y_right_top>80</y_right_top><x_right_bottom>40</x_right_bottom>
        <y_right_bottom>90</y_right_bottom><x_left_bottom>30</x_left_bottom><y_left_bottom>90</y_left_bottom>
        </robndbox><angle>0</angle></object>
</annotation>
"""


def _bad_dior(root: Path) -> Path:
    """Image A with both files (faulty objects), B without its oriented file, C with a broken
    horizontal file, D listed without files, E an image without annotation, F an annotation
    without image, G whose XML size disagrees with its image."""
    for folder in (H_DIR, R_DIR, "JPEGImages-trainval", "JPEGImages-test", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for name in "ABCEG":
        Image.new("RGB", (60, 60) if name == "G" else (100, 100)).save(root / f"JPEGImages-trainval/{name}.jpg")
    for name in "ABFG":
        (root / H_DIR / f"{name}.xml").write_text(H_XML.format(name=name))
    for name in "ACFG":
        (root / R_DIR / f"{name}.xml").write_text(R_XML)
    (root / H_DIR / "C.xml").write_text("<annotation>\n<object>\n</annotation>\n")
    (root / "ImageSets/Main/train.txt").write_text("A\nB\nC\n\nD\nE\nF\nG\n")
    return root


def test_every_problem_named_with_file_and_line(tmp_path, problems):
    source = DiorSource(_bad_dior(tmp_path), SIOR, split="train")
    items = source.items(problems)
    assert [i.name for i in items] == ["A", "B", "C", "G"]
    assert problems.where() == {
        ("missing_annotation", "B.xml", None),  # no oriented file: kept with its horizontal boxes
        ("missing_image", "train.txt", 5),
        ("missing_annotation", "E.jpg", None),
        ("missing_image", "F.xml", None),
    }
    problems.clear()
    a = source.read(items[0], problems)
    assert problems.where() == {
        ("malformed_xml", "A.xml", 6),  # no <name>
        ("malformed_xml", "A.xml", 7),  # xmin is not a number
        ("unknown_class", "A.xml", 8),
        ("degenerate_box", "A.xml", 9),  # zero width
        ("unpaired_box", "A.xml", 5),  # horizontal vehicle at 60,60 without oriented partner
        ("unpaired_box", "A.xml", 8),  # the oriented file's line 8: vehicle at 30,80
    }
    assert {Path(p.path).parent.name for p in problems.of("unpaired_box")} == {
        "Horizontal Bounding Boxes", "Oriented Bounding Boxes"}
    paired = [o for o in a.objects if "horizontal_line" in o.extras]
    assert len(a.objects) == 3 and len(paired) == 1
    np.testing.assert_array_equal(paired[0].hbox, [10, 10, 20, 16])
    np.testing.assert_array_equal(paired[0].corners, [[11, 11], [19, 11], [19, 15], [11, 15]])
    problems.clear()
    b = source.read(items[1], problems)
    assert len(b.objects) == 2 and problems.where() == {("malformed_xml", "B.xml", 6), ("malformed_xml", "B.xml", 7),
                                                        ("unknown_class", "B.xml", 8), ("degenerate_box", "B.xml", 9)}
    problems.clear()
    c = source.read(items[2], problems)
    assert problems.where() == {("malformed_xml", "C.xml", 3)}  # broken horizontal file; oriented kept
    assert len(c.objects) == 2
    problems.clear()
    g = source.read(items[3], problems)
    assert problems.where() >= {("size_mismatch", "G.xml", 3)} and (g.width, g.height) == (60, 60)
    with pytest.raises(BadInputError, match="A.xml:6"):
        source.read(items[0], raise_problem)


def test_match_boxes_is_optimal_and_thresholded():
    a = [[0, 0, 10, 10], [5, 0, 15, 10]]
    b = [[6, 0, 16, 10], [0, 0, 9, 10], [100, 100, 110, 110]]
    assert sorted(match_boxes(a, b, 0.3)) == [(0, 1), (1, 0)]
    assert match_boxes(a, [[50, 50, 60, 60]], 0.3) == []
    assert match_boxes([], b, 0.3) == []


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="boxes="):
        DiorSource(tmp_path, SIOR, boxes="rotated")
    _bad_dior(tmp_path)
    with pytest.raises(FileNotFoundError, match="split file"):
        DiorSource(tmp_path, SIOR, split="trainval").items(raise_problem)
