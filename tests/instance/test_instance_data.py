"""Instance data: the streamed per-image index against instances.json, the dataset's masks and boxes
against the RLEs, augmentation moving image, masks and boxes together, crops, empty images, bad input."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from samrs.classes import subset_classes
from samrs.data.instance_index import InstanceIndex, image_name
from samrs.data.instances import mask_boxes, pack_masks, unpack_masks
from samrs.data.layout import SubsetLayout
from samrs.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from samrs.labeling.rle import rle_to_mask
from samrs.utils.io import read_rgb


def coco(root):
    return json.loads((root / "instances.json").read_text())


def truth_of(root, name):
    """The annotations of image `name` as json.load reads them."""
    data = coco(root)
    image = next(i for i in data["images"] if image_name(i["file_name"], SubsetLayout()) == name)
    return image, [a for a in data["annotations"] if a["image_id"] == image["id"]]


# --- the index ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("on_disk", [True, False])
def test_index_gives_each_images_annotations_as_the_file_holds_them(generated_subsets, tmp_path, on_disk):
    root = generated_subsets["sota"]
    index = InstanceIndex.open(root / "instances.json", subset_classes("sota"), SubsetLayout(),
                               tmp_path / "idx" if on_disk else None)
    data = coco(root)
    assert len(index) == len(data["images"])
    for image in data["images"]:
        name = image_name(image["file_name"], SubsetLayout())
        expected = [a for a in data["annotations"] if a["image_id"] == image["id"]]
        got = index.annotations(name)
        assert index.image(name) == (image["id"], image["height"], image["width"])
        assert [(a["c"], a["b"], a["s"], a["r"]) for a in got] == \
            [(a["category_id"], a["bbox"], a["segmentation"], a["rbox"]) for a in expected]
    assert (tmp_path / "idx" / "instances-index.bin").is_file() == on_disk


def test_index_groups_annotations_that_come_in_any_order_and_maps_categories_by_name(generated_subsets, tmp_path):
    data = coco(generated_subsets["sior"])
    rng = np.random.default_rng(0)
    data["annotations"] = [data["annotations"][i] for i in rng.permutation(len(data["annotations"]))]
    # another file's category ids: names decide the class
    data["categories"] = [{"id": c["id"] + 100, "name": c["name"].upper()} for c in data["categories"]]
    for ann in data["annotations"]:
        ann["category_id"] += 100
    path = tmp_path / "shuffled.json"
    path.write_text(json.dumps({"categories": data["categories"], "images": data["images"],
                                "annotations": data["annotations"]}))
    index = InstanceIndex.open(path, subset_classes("sior"), SubsetLayout(), tmp_path / "idx")
    for image in data["images"]:
        expected = sorted((a["category_id"] - 100, a["segmentation"]["counts"]) for a in data["annotations"]
                          if a["image_id"] == image["id"])
        got = sorted((a["c"], a["s"]["counts"]) for a in index.annotations(image_name(image["file_name"], SubsetLayout())))
        assert got == expected
    assert index.category_of[0] == 100


def test_index_is_reused_until_the_instances_file_changes(generated_subsets, tmp_path):
    root = tmp_path / "sota"
    shutil.copytree(generated_subsets["sota"], root)
    args = (subset_classes("sota"), SubsetLayout(), tmp_path / "idx")
    InstanceIndex.open(root / "instances.json", *args)
    table = tmp_path / "idx" / "instances-index.json"
    first = table.stat().st_mtime_ns
    InstanceIndex.open(root / "instances.json", *args)
    assert table.stat().st_mtime_ns == first
    data = coco(root)
    data["annotations"] = data["annotations"][:1]
    (root / "instances.json").write_text(json.dumps(data))
    os.utime(root / "instances.json", ns=(first + 10**9, first + 10**9))
    index = InstanceIndex.open(root / "instances.json", *args)
    assert sum(len(index.annotations(n)) for n in index.images) == 1


def test_index_refuses_unknown_classes_and_missing_files(generated_subsets, tmp_path):
    with pytest.raises(ValueError, match=r"category 'large-vehicle' .* is not a class of sior"):
        InstanceIndex.open(generated_subsets["sota"] / "instances.json", subset_classes("sior"), SubsetLayout())
    with pytest.raises(FileNotFoundError, match=r"nothere.json: instances file not found.*data.instances"):
        InstanceIndex.open(tmp_path / "nothere.json", subset_classes("sior"), SubsetLayout())


# --- samples: masks and boxes against the RLEs ----------------------------------------------------------

@pytest.mark.parametrize("cached", [True, False])
def test_whole_image_samples_hold_every_instance_as_its_rle(generated_subsets, make_data, tmp_path, cached):
    data = make_data(generated_subsets, tmp_path / "cache" if cached else None, val_mode="whole")
    data.prepare_data()
    data.setup("validate")
    for subset, ds in data.val_sets.items():
        root = generated_subsets[subset]
        for i, name in enumerate(ds.names):
            sample = ds[i]
            image, annotations = truth_of(root, name)
            assert sample["image_id"] == image["id"]
            masks = np.stack([rle_to_mask(a["segmentation"]) for a in annotations])
            np.testing.assert_array_equal(sample["masks"].numpy().astype(bool), masks)
            x, y, w, h = np.array([a["bbox"] for a in annotations]).T
            np.testing.assert_allclose(sample["boxes"].numpy(), np.stack([x, y, x + w, y + h], 1))
            assert sample["labels"].tolist() == [a["category_id"] for a in annotations]
            np.testing.assert_allclose(sample["rboxes"].numpy(), [a["rbox"] for a in annotations], atol=1e-4)
            pixels = read_rgb(root / "images" / f"{name}.png").astype(np.float32) / 255
            np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy(),
                                       (pixels - IMAGENET_MEAN) / IMAGENET_STD, atol=1e-5)


def test_centre_crops_cut_instances_and_drop_the_barely_visible(generated_subsets, make_data, tmp_path):
    min_visible = 0.6
    data = make_data(generated_subsets, tmp_path / "cache", val_transform={"crop_size": 40}, min_visible=min_visible)
    data.prepare_data()
    data.setup("validate")
    ds = data.val_sets["fast"]
    checked = dropped = 0
    for i, name in enumerate(ds.names):
        sample = ds[i]
        image, annotations = truth_of(generated_subsets["fast"], name)
        top, left = (image["height"] - 40) // 2, (image["width"] - 40) // 2
        expected, labels = [], []
        for a in annotations:
            full = rle_to_mask(a["segmentation"])
            crop = full[top:top + 40, left:left + 40]
            if crop.sum() >= min_visible * full.sum() and crop.any():
                expected.append(crop)
                labels.append(a["category_id"])
            else:
                dropped += 1
        got = sample["masks"].numpy().astype(bool)
        assert got.shape == (len(expected), 40, 40)
        np.testing.assert_array_equal(got, np.array(expected).reshape(got.shape))
        assert sample["labels"].tolist() == labels
        np.testing.assert_array_equal(sample["boxes"].numpy(), mask_boxes(got))
        checked += len(expected)
    assert checked and dropped  # the crop both kept and dropped instances


def test_flips_and_rotations_move_image_masks_and_boxes_together(generated_subsets, make_data):
    no_colour = {"color": "none", "scale_p": 0.0, "crop_size": 64}
    plain = make_data(generated_subsets, train_transform={**no_colour, "hflip": 0.0, "vflip": 0.0, "rotate90": 0.0})
    moved = make_data(generated_subsets, train_transform={**no_colour, "hflip": 1.0, "vflip": 0.0, "rotate90": 1.0})
    for data in (plain, moved):
        data.setup("fit")
    seen = set()
    for i in range(len(plain.train_sets["sota"])):
        a, b = plain.train_sets["sota"][i], moved.train_sets["sota"][i]
        image = a["image"].flip(-1)  # hflip, then a rotation by k * 90 degrees that albumentations chose
        k = next(k for k in range(4) if torch.equal(torch.rot90(image, k, (1, 2)), b["image"]))
        seen.add(k)
        masks = torch.rot90(a["masks"].flip(-1), k, (1, 2))
        assert torch.equal(masks, b["masks"]) and torch.equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(b["boxes"].numpy(), mask_boxes(b["masks"].numpy().astype(bool)))
    assert len(seen) > 1


def test_scaled_crops_scale_the_instances(generated_subsets, make_data):
    data = make_data(generated_subsets, min_visible=1.0, train_transform={
        "crop_size": 128, "scale_p": 1.0, "scale_range": [2.0, 2.0], "hflip": 0.0, "vflip": 0.0, "rotate90": 0.0})
    data.setup("fit")
    ds = data.train_sets["sior"]
    for i, name in enumerate(ds.names[:4]):
        sample = ds[i]
        _, annotations = truth_of(generated_subsets["sior"], name)
        areas = {a["category_id"]: [] for a in annotations}
        for a in annotations:
            areas[a["category_id"]].append(int(rle_to_mask(a["segmentation"]).sum()))
        for label, mask in zip(sample["labels"].tolist(), sample["masks"]):
            # a whole instance (min_visible=1) at twice the size: four times the pixels, up to its rim
            assert any(abs(int(mask.sum()) - 4 * area) <= 2 * np.sqrt(area) * 2 + 4 for area in areas[label])


@pytest.mark.parametrize("count", [0, 1, 8, 9, 17])
def test_packed_masks_round_trip(count):
    masks = np.random.default_rng(count).random((count, 5, 7)) > 0.5
    packed = pack_masks(masks)
    assert packed.shape == (5, 7, max(1, -(-count // 8)))
    np.testing.assert_array_equal(unpack_masks(packed, count), masks)
    padded = np.full((6, 7, packed.shape[2]), 255, np.uint8)  # a transform's label padding
    assert not unpack_masks(padded, count).any()


def test_images_without_instances_give_empty_targets(generated_subsets, make_data, tmp_path):
    root = tmp_path / "sota"
    shutil.copytree(generated_subsets["sota"], root)
    data = coco(root)
    name = (root / "train.txt").read_text().split()[0]
    emptied = next(i["id"] for i in data["images"] if image_name(i["file_name"], SubsetLayout()) == name)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != emptied]
    (root / "instances.json").write_text(json.dumps(data))
    dm = make_data({"sota": root}, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    sample = dm.train_sets["sota"][dm.train_sets["sota"].names.index(name)]
    assert sample["boxes"].shape == (0, 4) and sample["labels"].shape == (0,) and sample["masks"].shape == (0, 48, 48)
    assert sample["boxes"].dtype == torch.float32 and sample["labels"].dtype == torch.int64


def test_images_the_instances_file_lacks_are_problems(generated_subsets, make_data, tmp_path):
    root = tmp_path / "sior"
    shutil.copytree(generated_subsets["sior"], root)
    data = coco(root)
    gone = data["images"].pop(0)
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != gone["id"]]
    (root / "instances.json").write_text(json.dumps(data))
    name = image_name(gone["file_name"], SubsetLayout())
    split = "train" if name in (root / "train.txt").read_text().split() else "val"
    with pytest.raises(ValueError, match=rf"(?s)sior/{split}: 1 of .* unusable .*instances.json: image {name} is not in"):
        dm = make_data({"sior": root})
        dm.setup("fit")
    dm = make_data({"sior": root}, on_error="skip")
    dm.setup("fit")
    assert name not in dm.train_sets["sior"].names + dm.val_sets["sior"].names


def test_training_batches_are_proportional_and_by_subset(generated_subsets, make_data, tmp_path):
    dm = make_data(generated_subsets, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert list(batch) == ["sota", "sior", "fast"]
    for subset, part in batch.items():
        n = dm.train_batch_sizes[subset]
        assert part["image"].shape == (n, 3, 48, 48) and len(part["targets"]) == n == len(part["name"])
        for t in part["targets"]:
            assert t["masks"].shape[1:] == (48, 48) and len(t["boxes"]) == len(t["labels"]) == len(t["masks"])
            assert (t["labels"] < subset_classes(subset).num_classes).all()
