"""iSAID instance masks as objects: the devkit's real masks, generated masks, bad input, and how well
DOTA's rotated boxes of the same image match iSAID's pixel masks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from samrs.classes import ISAID_COLORS, subset_classes
from samrs.geometry import mask_hbox, rasterize_polygon
from samrs.sources.dota import DotaSource
from samrs.sources.isaid import IsaidSource, decode_instances
from samrs.utils.io import read_rgb

SOTA = subset_classes("sota")
ISAID_DIR = "isaid_devkit/preprocess/dataset/iSAID"


def file_class_counts(id_path, class_path) -> Counter:
    """Instances per class counted straight from the two PNGs: distinct (id colour, class colour)
    pairs, background left out."""
    ids, classes = (np.asarray(Image.open(p).convert("RGB")) for p in (id_path, class_path))
    keep = ids.any(axis=2)
    pair = np.zeros(int(keep.sum()), np.int64)
    for shift, channel in zip((40, 32, 24, 16, 8, 0), [*ids[keep].T, *classes[keep].T]):
        pair |= channel.astype(np.int64) << shift
    codes = np.unique(pair)
    names = {(r << 16) + (g << 8) + b: name for name, (r, g, b) in ISAID_COLORS.items()}
    return Counter(names[int(code) & 0xFFFFFF] for code in codes)


@pytest.fixture
def p0003(samples_dir, problems):
    source = IsaidSource(samples_dir / ISAID_DIR, SOTA, split="val")
    items = source.items(problems)
    assert [i.name for i in items] == ["P0003"]
    return source, source.read(items[0], problems)


def test_real_masks_objects_and_boxes(p0003, problems, covers):
    source, record = p0003
    assert (record.width, record.height) == (1147, 1023)
    assert Counter(o.name for o in record.objects) == file_class_counts(
        record.annotation_path, record.extras["semantic_mask"])
    assert len(record.objects) == 59
    masks = source.instance_masks(record)
    assert len(masks) == 59 and all(m.shape == (1023, 1147) and m.any() for m in masks)
    for crop, mask in zip(source.instance_crops(record), masks):
        np.testing.assert_array_equal(crop.full(1023, 1147), mask)
        assert crop.mask.shape == tuple(np.ptp(np.argwhere(mask), axis=0) + 1)
    assert not np.any(np.sum(masks, axis=0) > 1)  # instances never share a pixel
    for obj, mask in zip(record.objects, masks):
        assert obj.class_id == SOTA.id_of(obj.name)
        np.testing.assert_array_equal(obj.hbox, mask_hbox(mask))
        assert covers(obj.corners, mask)
        if obj.polygon is not None:  # a mask on the border: its rectangle is clipped to the image
            assert covers(obj.polygon, mask)
    assert problems == []  # derived boxes that leave the image are not input problems


def test_masks_without_their_image(samples_dir, problems):
    source = IsaidSource(samples_dir / ISAID_DIR, SOTA, split="train")
    assert source.items(problems) == []
    assert [(p.kind, p.path.endswith("P0002_instance_id_RGB.png")) for p in problems] == [("missing_image", True)]
    base = samples_dir / ISAID_DIR / "train/images/P0002"
    id_path, class_path = f"{base}_instance_id_RGB.png", f"{base}_instance_color_RGB.png"
    instances = decode_instances(read_rgb(id_path), read_rgb(class_path))
    names = {color: name for name, color in ISAID_COLORS.items()}
    assert Counter(names[i.class_color] for i in instances) == file_class_counts(id_path, class_path)
    assert Counter(names[i.class_color] for i in instances) == {"large-vehicle": 258, "small-vehicle": 31}


def test_dota_boxes_against_isaid_masks_per_class(samples_dir, p0003):
    """P0003's DOTA boxes, rasterised as the polygon_fill labeler paints them, against iSAID's masks.

    Measured: large-vehicle 0.781, small-vehicle 0.651; storage-tank 0 (one tank that iSAID
    annotates and DOTA v1.0 does not). The boxes are drawn 1-2 px outside the vehicles (median
    mask extent minus box: -1 px left, -2 px right and bottom): a 2 px band around a 10 x 20 px
    car is a third of its area, so small vehicles score lower. The data are fixed, so the floors sit
    just under the measurement: the same boxes painted with cv2.fillPoly's rule (every pixel an edge
    touches) score 0.760 / 0.627, and shifted by half a pixel 0.760 / 0.627, both below them.
    """
    source, isaid = p0003
    dota_source = DotaSource(samples_dir / "dota_devkit_yolo", SOTA, split="DOTA_demo", version="1.0")
    dota = next(dota_source.read(i, print) for i in dota_source.items(print) if i.name == "P0003")
    masks = source.instance_masks(isaid)
    shape = (isaid.height, isaid.width)
    iou = {}
    for name in ("large-vehicle", "small-vehicle", "storage-tank"):
        boxes, truth = np.zeros(shape, bool), np.zeros(shape, bool)
        for obj in dota.objects:
            if obj.name == name:
                boxes |= rasterize_polygon(obj.region(), *shape)
        for obj, mask in zip(isaid.objects, masks):
            if obj.name == name:
                truth |= mask
        iou[name] = (boxes & truth).sum() / (boxes | truth).sum()
    assert iou["large-vehicle"] >= 0.77
    assert iou["small-vehicle"] >= 0.64
    assert iou["storage-tank"] == 0


def test_generated_masks_read_back_exactly(generated, scenes, problems):
    source = IsaidSource(generated["dota"] / "iSAID", SOTA, split="train")
    items = source.items(problems)
    assert [i.name for i in items] == sorted(scenes["dota"])
    for item in items:
        record = source.read(item, problems)
        truth = [o for o in scenes["dota"][item.name].objects if o.class_name in ISAID_COLORS]
        masks = source.instance_masks(record)
        assert len(masks) == len(truth)
        by_mask = {m.tobytes(): o for o, m in zip(record.objects, masks)}
        for obj in truth:  # every scene object of an iSAID class, with its exact mask and class
            read = by_mask[obj.mask.tobytes()]
            assert read.class_id == obj.class_id
            np.testing.assert_array_equal(read.hbox, obj.hbox)
    assert problems == []


def test_bad_masks_are_reported(tmp_path, problems):
    folder = tmp_path / "val/images"
    folder.mkdir(parents=True)
    ids = np.zeros((40, 50, 3), np.uint8)
    ids[5:15, 5:15] = (10, 20, 30)
    ids[20:30, 20:40] = (40, 50, 60)
    classes = np.zeros_like(ids)
    classes[5:15, 5:15] = ISAID_COLORS["plane"]
    classes[20:30, 20:40] = (1, 2, 3)  # not in iSAID's palette
    for name in ("A", "B", "C", "D"):
        Image.new("RGB", (50, 40)).save(folder / f"{name}.png")
    for name in ("A", "C", "D"):
        Image.fromarray(ids).save(folder / f"{name}_instance_id_RGB.png")
    for name in ("A", "B", "D"):
        Image.fromarray(classes).save(folder / f"{name}_instance_color_RGB.png")
    Image.new("RGB", (60, 40)).save(folder / "D.png")  # masks of another size than the image
    (folder / "B_instance_id_RGB.png").write_bytes(b"garbage")
    source = IsaidSource(tmp_path, SOTA)
    items = source.items(problems)
    assert [i.name for i in items] == ["A", "B", "D"]
    assert problems.where() == {("missing_annotation", "C_instance_id_RGB.png", None)}
    problems.clear()
    record = source.read(items[0], problems)
    assert [o.name for o in record.objects] == ["plane"]
    assert source.read(items[1], problems) is None
    assert source.read(items[2], problems) is None
    assert problems.where() == {("unknown_class", "A_instance_color_RGB.png", None),
                                ("unreadable_image", "B_instance_id_RGB.png", None),
                                ("size_mismatch", "D_instance_id_RGB.png", None)}
