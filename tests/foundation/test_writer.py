"""The SAMRS subset writer: crop RLE, overlap policy, files, instances.json, splits, caching."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs.classes import subset_classes
from samrs.errors import ConfigError
from samrs.labeling.base import InstanceMask
from samrs.labeling.overlap import colorize, paint_label_map
from samrs.labeling.rle import crop_to_rle, rle_to_mask
from samrs.labeling.writer import SubsetWriter, make_splits
from samrs.scenes import generate_scenes
from samrs.scenes.subset import write_generated_subset


def test_crop_rle_equals_pycocotools_on_full_masks():
    rng = np.random.default_rng(0)
    for _ in range(200):
        H, W = rng.integers(1, 30, 2)
        h, w = rng.integers(1, H + 1), rng.integers(1, W + 1)
        x0, y0 = rng.integers(0, W - w + 1), rng.integers(0, H - h + 1)
        crop = rng.random((h, w)) < rng.random()
        full = np.zeros((H, W), bool)
        full[y0 : y0 + h, x0 : x0 + w] = crop
        expected = mask_utils.encode(np.asfortranarray(full.astype(np.uint8)))["counts"].decode()
        rle = crop_to_rle(crop, int(x0), int(y0), int(H), int(W))
        assert rle["counts"] == expected and rle["size"] == [H, W]
        assert np.array_equal(rle_to_mask(rle), full)
    with pytest.raises(ValueError, match="leaves"):
        crop_to_rle(np.ones((3, 3), bool), 8, 0, 10, 10)


def _square(x0, y0, side, cls, index, score=None):
    return InstanceMask(np.ones((side, side), bool), x0, y0, index, cls, score=score)


@pytest.mark.parametrize(
    "policy,center",
    [("smaller_on_top", 2), ("larger_on_top", 1), ("file_order", 2), ("score", 1)],
)
def test_overlap_policy_decides_the_winner(policy, center):
    big = _square(0, 0, 10, cls=1, index=0, score=0.9)
    small = _square(4, 4, 2, cls=2, index=1, score=0.5)
    label = paint_label_map([big, small], 10, 10, policy)
    assert label[5, 5] == center and label[0, 0] == 1
    if policy == "file_order":  # the official behaviour: the last instance in the file wins
        assert paint_label_map([small, big], 10, 10, policy)[5, 5] == 2
    with pytest.raises(ValueError, match="smaller_on_top"):
        paint_label_map([big], 10, 10, "biggest")


def test_colorize_uses_the_palette_and_black_for_unlabeled():
    rgb = colorize(np.array([[0, 1, 255]], np.uint8), [(10, 20, 30), (40, 50, 60)])
    assert rgb.tolist() == [[[10, 20, 30], [40, 50, 60], [0, 0, 0]]]


def test_generated_subset_files_agree_with_the_scenes(tmp_path):
    root = write_generated_subset(tmp_path / "sota", "sota", count=6, size=64, num_objects=(2, 5), seed=1,
                                  val_fraction=0.3, progress=False)
    scenes = list(generate_scenes("sota", 6, seed=1, size=64, num_objects=(2, 5)))
    coco = json.loads((root / "instances.json").read_text())
    meta = json.loads((root / "meta.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(subset_classes("sota").names)
    assert len(coco["images"]) == 6 and meta["counts"]["images"] == 6
    assert len(coco["annotations"]) == sum(len(s.objects) for s in scenes) == meta["counts"]["instances"]
    by_file = {im["file_name"]: im["id"] for im in coco["images"]}
    for scene in scenes:
        label = np.asarray(Image.open(root / "labels" / f"{scene.name}.png"))
        assert np.array_equal(label, scene.label_map())
        assert np.array_equal(np.asarray(Image.open(root / "images" / f"{scene.name}.png")), scene.image)
        anns = [a for a in coco["annotations"] if a["image_id"] == by_file[f"images/{scene.name}.png"]]
        for ann, obj in zip(sorted(anns, key=lambda a: a["object_index"]), scene.objects):
            assert ann["category_id"] == obj.class_id and ann["area"] == obj.area
            assert np.array_equal(rle_to_mask(ann["segmentation"]), obj.mask)
            x0, y0, x1, y1 = obj.hbox
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert np.allclose(np.reshape(ann["rbox"], (4, 2)), obj.corners, atol=0.01)
    train = (root / "train.txt").read_text().split()
    val = (root / "val.txt").read_text().split()
    assert sorted(train + val) == sorted(s.name for s in scenes) and val and not set(train) & set(val)
    mode = stat.S_IMODE((root / "labels" / f"{scenes[0].name}.png").stat().st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH, "written files must be readable by others"


def test_generated_subset_is_reused_and_never_replaced(tmp_path):
    root = write_generated_subset(tmp_path / "s", "sior", count=3, size=64, progress=False)
    first = (root / "instances.json").stat().st_mtime_ns
    write_generated_subset(tmp_path / "s", "sior", count=3, size=64, progress=False)
    assert (root / "instances.json").stat().st_mtime_ns == first
    files = sorted(p for p in root.rglob("*") if p.is_file())
    with pytest.raises(ConfigError, match=r"other settings \(count differ\).*empty or new --out"):
        write_generated_subset(tmp_path / "s", "sior", count=4, size=64, progress=False)
    assert sorted(p for p in root.rglob("*") if p.is_file()) == files
    assert (root / "instances.json").stat().st_mtime_ns == first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "NOTES.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and was not generated"):
        write_generated_subset(tmp_path / "mine", "sior", count=3, size=64, progress=False)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["NOTES.txt"]


def test_an_interrupted_generation_is_finished(tmp_path):
    settings = dict(count=3, size=64, progress=False)
    root = write_generated_subset(tmp_path / "s", "sior", **settings)
    (root / "instances.json").unlink()
    marker = json.loads((root / ".generated.json").read_text())
    (root / ".generated.json").write_text(json.dumps({**marker, "complete": False}))
    write_generated_subset(tmp_path / "s", "sior", **settings)
    assert len(json.loads((root / "instances.json").read_text())["images"]) == 3


def test_writer_resumes_from_parts_and_splits_are_stable(tmp_path):
    classes = subset_classes("hrsc2016")
    writer = SubsetWriter(tmp_path, classes, val_fraction=0.5)
    image = np.zeros((8, 8, 3), np.uint8)
    writer.write("a", image, [_square(1, 1, 3, 0, 0)])
    assert writer.is_done("a") and not writer.is_done("b")
    writer.write("b", image, [])
    meta = writer.finalize({"source": "test"})
    assert meta["counts"]["images"] == 2 and meta["counts"]["instances"] == 1 and meta["source"] == "test"
    names = [f"img{i}" for i in range(200)]
    splits = make_splits(names, 0.05)
    assert splits == make_splits(list(reversed(names)), 0.05)
    assert 3 <= len(splits["val"]) <= 20
    assert make_splits(names[:2], 0.05)["val"], "a tiny subset still gets one validation image"
