"""HRSC2016 reader: the real XML (H-Box, R-Box in radians, bow point), generated scenes with colour
segmentations read back as exact masks, and bad input."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs.classes import subset_classes
from samrs.scenes.formats import hrsc_mbox
from samrs.sources.base import BadInputError, raise_problem
from samrs.sources.hrsc2016 import Hrsc2016Source

HRSC = subset_classes("hrsc2016")


@pytest.fixture
def real_hrsc(samples_dir, tmp_path) -> Path:
    """mmrotate's real HRSC2016 XML (linked) with a blank image of its size and its demo.txt split."""
    sample = samples_dir / "mmrotate/tests/data/hrsc"
    (tmp_path / "FullDataSet/AllImages").mkdir(parents=True)
    (tmp_path / "FullDataSet/Annotations").symlink_to(sample / "FullDataSet/Annotations")
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets/demo.txt").symlink_to(sample / "demo.txt")
    Image.new("RGB", (1172, 816)).save(tmp_path / "FullDataSet/AllImages/100000006.bmp")
    return tmp_path


def test_real_annotation(real_hrsc, problems):
    source = Hrsc2016Source(real_hrsc, HRSC, split="demo")
    [item] = source.items(problems)
    record = source.read(item, problems)
    [ship] = record.objects
    assert (record.width, record.height) == (1172, 816) and ship.class_id == 0 and ship.name == "ship"
    np.testing.assert_array_equal(ship.hbox, [119, 75, 587, 789])  # HRSC's own H-Box
    cx, cy, w, h, angle = hrsc_mbox(ship.corners)  # the corners give back the file's R-Box
    np.testing.assert_allclose([cx, cy, w, h, angle], [341.2143, 443.3325, 778.4297, 178.2595, -1.122944], atol=1e-6)
    # The bow point lies at one end of the long axis: the angle's sign and unit are read right.
    offset = np.array(ship.extras["header"]) - (cx, cy)
    along, across = offset @ [np.cos(angle), np.sin(angle)], offset @ [-np.sin(angle), np.cos(angle)]
    assert abs(along) > 0.8 * w / 2 and abs(across) < h / 2
    # The R-Box reaches y = 833 in an 816 px image: clipped, reported on the object's line.
    assert problems.where() == {("out_of_image_box", "100000006.xml", 36)}
    assert ship.polygon is not None and ship.polygon[:, 1].max() == 816
    assert ship.extras["seg_color"] is None and source.instance_masks(record) == [None]
    assert ship.extras["class_id"] == "100000013"


def test_generated_scenes_masks_read_back(generated, scenes, problems, covers):
    root = generated["hrsc2016"]
    test_names = (root / "ImageSets/test.txt").read_text().split()
    source = Hrsc2016Source(root, HRSC, split=["trainval", "test"])
    items = source.items(problems)
    assert sorted(i.name for i in items) == sorted(scenes["hrsc2016"]) and problems == []
    for item in items:
        record = source.read(item, problems)
        truth = scenes["hrsc2016"][item.name].objects
        masks = source.instance_masks(record)
        assert len(record.objects) == len(truth) == len(masks)
        for obj, t, mask in zip(record.objects, truth, masks):
            np.testing.assert_array_equal(obj.hbox, t.hbox)
            assert covers(obj.corners, t.mask)
            if item.name in test_names:
                np.testing.assert_array_equal(mask, t.mask)
            else:
                assert mask is None
    assert problems == []
    assert len(test_names) == 4 and not (root / "FullDataSet/Segmentations" / f"{items[0].name}.png").exists()


def test_mbox_round_trip():
    from samrs.geometry import rotated_rect

    for angle in (-1.5, -0.3, 0.0, 0.7, 1.5707):
        corners = rotated_rect(50, 40, 30, 8, angle)
        assert np.allclose(hrsc_mbox(corners), (50, 40, 30, 8, angle))
        assert np.allclose(hrsc_mbox(np.roll(corners, 1, axis=0)), (50, 40, 30, 8, angle))  # any start corner


def test_bad_input(real_hrsc, tmp_path, problems):
    text = (real_hrsc / "FullDataSet/Annotations/100000006.xml").read_text()
    ann = tmp_path / "bad/FullDataSet/Annotations"
    ann.mkdir(parents=True)
    (tmp_path / "bad/FullDataSet/AllImages").mkdir()
    (tmp_path / "bad/ImageSets").mkdir()
    (ann / "1.xml").write_text(text.replace("<seg_color>\n      </seg_color>", "<seg_color>1,2</seg_color>"))
    (ann / "2.xml").write_text(text.replace("<mbox_ang>-1.122944</mbox_ang>", "<mbox_ang>east</mbox_ang>"))
    (ann / "3.xml").write_text(text.replace("</HRSC_Objects>", ""))
    for name in "123":
        Image.new("RGB", (1172, 816)).save(tmp_path / f"bad/FullDataSet/AllImages/{name}.bmp")
    (tmp_path / "bad/ImageSets/test.txt").write_text("1\n2\n3\n4\n")
    source = Hrsc2016Source(tmp_path / "bad", HRSC)
    items = source.items(problems)
    assert [i.name for i in items] == ["1", "2", "3"]
    assert problems.where() == {("missing_image", "test.txt", 4)}
    problems.clear()
    one, two, three = (source.read(i, problems) for i in items)
    assert len(one.objects) == 1 and one.objects[0].extras["seg_color"] is None
    assert two.objects == [] and three is None
    # seg_color sits on line 52, mbox_ang on 50; the broken file fails at its last tag, line 58.
    assert problems.where() == {("malformed_xml", "1.xml", 52), ("out_of_image_box", "1.xml", 36),
                                ("malformed_xml", "2.xml", 50), ("malformed_xml", "3.xml", 58)}
    with pytest.raises(BadInputError, match="1.xml:52: seg_color"):
        source.read(items[0], raise_problem)
    with pytest.raises(FileNotFoundError, match="split file"):
        Hrsc2016Source(tmp_path / "bad", HRSC, split="train").items(raise_problem)


def test_segmentation_colours_are_exact(generated):
    """The PNG holds black and exactly the XML's seg_colors (no antialiasing, no other colour)."""
    root = generated["hrsc2016"] / "FullDataSet"
    for png in (root / "Segmentations").glob("*.png"):
        colours = {tuple(c) for c in np.unique(np.asarray(Image.open(png)).reshape(-1, 3), axis=0)}
        xml = ET.parse(root / "Annotations" / f"{png.stem}.xml").getroot()
        listed = {tuple(int(v) for v in e.text.split(",")) for e in xml.iter("seg_color")}
        assert colours == listed | {(0, 0, 0)}
