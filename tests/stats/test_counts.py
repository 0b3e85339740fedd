"""Counts of samrs.analysis against counts computed independently from the label PNGs and
instances.json (json.load + full-mask decoding), on generated and hand-made subsets."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs.analysis import StatsSettings, compute_subset_stats, open_subset
from samrs.analysis.coco_stream import iter_annotations, iter_images
from samrs.utils.io import write_png

SETTINGS = StatsSettings(
    mask_size_sides=(4, 8, 16, 32),
    size_groups={"small": 8, "medium": 16},
    objects_per_image_edges=(0, 1, 2, 3, 5),
    labeled_fraction_bins=10,
    top_image_sizes=5,
    max_problem_examples=3,
)


def reference(root: Path, num_classes: int) -> dict:
    """Everything the stats report, computed the simple way: whole files in memory."""
    pixels = np.zeros(num_classes, dtype=np.int64)
    total = labeled = 0
    sizes: Counter = Counter()
    fractions = []
    for path in sorted((root / "labels").glob("*.png")):
        label = np.asarray(Image.open(path))
        values, counts = np.unique(label, return_counts=True)
        for v, c in zip(values, counts):
            if v < num_classes:
                pixels[v] += c
        total += label.size
        labeled += int((label < num_classes).sum())
        fractions.append((label < num_classes).mean())
        sizes[(label.shape[1], label.shape[0])] += 1
    coco = json.loads((root / "instances.json").read_text())
    instances = np.zeros(num_classes, dtype=np.int64)
    instance_pixels = np.zeros(num_classes, dtype=np.int64)
    areas = []
    per_image = Counter()
    for ann in coco["annotations"]:
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        area = int(mask_utils.decode(rle).sum())
        instances[ann["category_id"]] += 1
        instance_pixels[ann["category_id"]] += area
        areas.append(area)
        per_image[ann["image_id"]] += 1
    objects = [per_image.get(im["id"], 0) for im in coco["images"]]
    return {"pixels": pixels, "total": total, "labeled": labeled, "sizes": sizes, "fractions": fractions,
            "instances": instances, "instance_pixels": instance_pixels, "areas": areas, "objects": objects,
            "images": len(coco["images"])}


def size_bin(area: int, sides: tuple[int, ...]) -> int:
    return sum(1 for s in sides if area >= s * s)


def assert_matches_reference(stats: dict, root: Path) -> None:
    n = stats["num_classes"]
    ref = reference(root, n)
    classes = stats["classes"]
    assert stats["images"] == ref["images"] == len(list((root / "labels").glob("*.png")))
    assert stats["instances"] == len(ref["areas"])
    assert [c["pixels"] for c in classes] == ref["pixels"].tolist()
    assert [c["instances"] for c in classes] == ref["instances"].tolist()
    assert [c["instance_pixels"] for c in classes] == ref["instance_pixels"].tolist()
    assert stats["pixels"]["total"] == ref["total"]
    assert stats["pixels"]["labeled"] == ref["labeled"]
    assert stats["pixels"]["labeled_fraction"] == pytest.approx(ref["labeled"] / ref["total"])
    assert stats["labeled_fraction_per_image"]["mean"] == pytest.approx(np.mean(ref["fractions"]))
    assert sum(stats["labeled_fraction_per_image"]["images"]) == ref["images"]
    sides = SETTINGS.mask_size_sides
    expected_bins = np.bincount([size_bin(a, sides) for a in ref["areas"]], minlength=len(sides) + 1)
    assert stats["mask_size"]["instances"] == expected_bins.tolist()
    assert stats["mask_size"]["min"] == min(ref["areas"])
    assert stats["mask_size"]["max"] == max(ref["areas"])
    groups = stats["mask_size"]["groups"]
    assert groups["small"] == sum(a < 8 * 8 for a in ref["areas"])
    assert groups["medium"] == sum(8 * 8 <= a < 16 * 16 for a in ref["areas"])
    assert groups["large"] == sum(a >= 16 * 16 for a in ref["areas"])
    per_class_bins = np.array([c["mask_sizes"] for c in classes])
    assert per_class_bins.sum(0).tolist() == expected_bins.tolist()
    o = stats["objects_per_image"]
    assert o["mean"] == pytest.approx(np.mean(ref["objects"]))
    assert o["median"] == pytest.approx(np.median(ref["objects"]))
    assert o["max"] == max(ref["objects"])
    assert o["without_instances"] == ref["objects"].count(0)
    edges = [*SETTINGS.objects_per_image_edges, 10**9]
    assert o["counts"] == [sum(lo <= k < hi for k in ref["objects"]) for lo, hi in zip(edges, edges[1:])]
    common = {(e["width"], e["height"]): e["images"] for e in stats["image_sizes"]["most_common"]}
    assert common == dict(ref["sizes"])


@pytest.mark.parametrize("subset", ["sota", "sior", "fast"])
def test_counts_equal_independent_counts_on_generated_subsets(generated_subsets, subset):
    root = generated_subsets[subset]
    stats = compute_subset_stats(open_subset(root), SETTINGS)
    assert stats["subset"] == subset
    assert stats["num_classes"] == len(json.loads((root / "meta.json").read_text())["classes"])
    assert stats["splits"] == {s: len((root / f"{s}.txt").read_text().split()) for s in ("train", "val")}
    assert stats["channels"] == [3]
    assert stats["problems"]["counts"] == {}
    assert_matches_reference(stats, root)


def test_overlaps_count_label_pixels_and_instance_areas_apart(overlap_subset):
    stats = compute_subset_stats(open_subset(overlap_subset), SETTINGS)
    assert_matches_reference(stats, overlap_subset)
    by_name = {c["name"]: c for c in stats["classes"]}
    # the 8x8 ship lies on the 20x20 harbour: the label map gives it the shared pixels
    assert by_name["harbor"]["instance_pixels"] == 400
    assert by_name["harbor"]["pixels"] == 400 - 64
    assert stats["image_sizes"]["distinct"] == 2
    assert stats["image_sizes"]["min"] == [48, 32] and stats["image_sizes"]["max"] == [80, 60]
    assert stats["objects_per_image"]["without_instances"] == 1


def test_worker_processes_give_the_same_counts(overlap_subset):
    files = open_subset(overlap_subset)
    assert compute_subset_stats(files, SETTINGS, num_workers=2) == compute_subset_stats(files, SETTINGS)


def test_unfinished_labeling_run_is_read_from_its_parts(tmp_path, overlap_subset, make_overlap_subset):
    run = make_overlap_subset(tmp_path / "running", finalize=False)
    assert not (run / "instances.json").exists() and not (run / "meta.json").exists()
    with pytest.raises(ValueError, match="meta.json.*classes=NAME"):
        open_subset(run)
    partial = compute_subset_stats(open_subset(run, classes="sota"), SETTINGS)
    done = compute_subset_stats(open_subset(overlap_subset), SETTINGS)
    assert partial["annotations_source"].endswith(".samrs_parts")
    for key in ("images", "instances", "pixels", "classes", "mask_size", "objects_per_image"):
        assert partial[key] == done[key]


def test_bad_files_are_counted_as_problems_and_skipped(overlap_subset):
    root = overlap_subset
    (root / "labels" / "a.png").write_bytes(b"not a png")
    label = np.full((32, 48), 255, dtype=np.uint8)
    label[0, :5] = 40  # sota has 18 classes
    write_png(root / "labels" / "c.png", label)
    (root / "images" / "d.png").unlink()
    coco = json.loads((root / "instances.json").read_text())
    coco["annotations"][0]["category_id"] = 99
    coco["annotations"][1]["area"] += 7
    coco["annotations"][2]["image_id"] = 1234
    (root / "instances.json").write_text(json.dumps(coco))

    stats = compute_subset_stats(open_subset(root), SETTINGS)
    counts = stats["problems"]["counts"]
    assert counts == {"unreadable_label": 1, "unknown_label_id": 1, "missing_image": 1, "unknown_category": 1,
                      "area_mismatch": 1, "unknown_image_id": 1, "missing_label": 1}
    assert stats["images"] == 3
    assert stats["instances"] == len(coco["annotations"]) - 2  # bad category and unknown image skipped
    assert stats["pixels"]["unknown_ids"] == 5
    messages = " ".join(p["path"] + " " + p["message"] for p in stats["problems"]["examples"])
    assert "a.png" in messages and "[40]" in messages and "image_id 1234" in messages


def test_images_listed_after_annotations_are_still_found(overlap_subset):
    path = overlap_subset / "instances.json"
    coco = json.loads(path.read_text())
    path.write_text(json.dumps({"annotations": coco["annotations"], "categories": coco["categories"],
                                "images": coco["images"]}))
    assert list(iter_images(path)) == coco["images"]
    assert list(iter_annotations(path)) == coco["annotations"]


def test_broken_instances_file_names_the_file(overlap_subset):
    path = overlap_subset / "instances.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(ValueError, match="instances.json: not valid JSON"):
        compute_subset_stats(open_subset(overlap_subset), SETTINGS)


def test_missing_subset_and_label_folder_are_clear_errors(tmp_path, overlap_subset):
    with pytest.raises(FileNotFoundError, match="subset directory not found"):
        open_subset(tmp_path / "nowhere")
    shutil.rmtree(overlap_subset / "labels")
    with pytest.raises(FileNotFoundError, match="no label folder"):
        open_subset(overlap_subset)


def test_bad_bin_settings_are_rejected():
    with pytest.raises(ValueError, match="increasing positive"):
        StatsSettings((8, 8), {}, (0,), 10, 5, 3).area_edges
