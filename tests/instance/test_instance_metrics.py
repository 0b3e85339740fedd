"""COCO AP of boxes and masks against pycocotools on a hand-made case, DDP with uneven shards, the
rotated-box AP of the DOTA devkit on boxes with known overlaps, and the score tables."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.detection import InstanceAP, ap_table, rotated_iou, rotated_map, voc_ap
from samrs.detection.rotated import mask_rbox
from samrs.metrics import scores_table

H = W = 64
NUM_CLASSES = 3


def rect(x0, y0, x1, y1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def ring(x0, y0, x1, y1):
    m = rect(x0, y0, x1, y1)
    m[y0 + 2:y1 - 2, x0 + 2:x1 - 2] = False
    return m


def case():
    """Three images: hits, a duplicate, a miss, a wrong class, a mask much worse than its box,
    small and medium objects, an image with no ground truth, a class with five boxes."""
    truth = [
        [(0, rect(2, 2, 12, 12)), (1, rect(20, 20, 60, 60)), (2, rect(40, 2, 46, 8))],
        [(0, ring(5, 5, 35, 30)), (0, rect(40, 40, 50, 52)), *[(2, rect(2 + 8 * i, 50, 7 + 8 * i, 55)) for i in range(4)]],
        [],
    ]
    preds = [
        [(0, 0.9, rect(2, 2, 12, 12)), (0, 0.8, rect(3, 2, 12, 12)), (1, 0.7, rect(22, 20, 60, 58)),
         (1, 0.3, rect(0, 40, 10, 50)), (0, 0.6, rect(40, 2, 46, 8))],
        [(0, 0.95, rect(5, 5, 35, 30)), (0, 0.5, rect(41, 40, 50, 51)), (2, 0.45, rect(2, 50, 7, 55)),
         (2, 0.35, rect(10, 50, 15, 55))],
        [(2, 0.4, rect(10, 10, 20, 20))],
    ]
    return truth, preds


def box_of(mask):
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def as_tensors(truth, preds):
    targets = [{"boxes": torch.tensor([box_of(m) for _, m in t], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([c for c, _ in t], dtype=torch.int64),
                "masks": torch.from_numpy(np.array([m for _, m in t]).reshape(-1, H, W))} for t in truth]
    outputs = [{"boxes": torch.tensor([box_of(m) for _, _, m in p], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([c for c, _, _ in p], dtype=torch.int64),
                "scores": torch.tensor([s for _, s, _ in p], dtype=torch.float32),
                "masks": torch.from_numpy(np.array([m for _, _, m in p]).reshape(-1, H, W))} for p in preds]
    return outputs, targets


def pycocotools_stats(truth, preds, iou_type):
    """COCOeval's 12 numbers and per-class AP of the same case, built by hand."""
    images, annotations, results = [], [], []
    for i, (t, p) in enumerate(zip(truth, preds), start=1):
        images.append({"id": i, "width": W, "height": H})
        for c, m in t:
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            x0, y0, x1, y1 = box_of(m)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": c, "iscrowd": 0,
                                "area": float(mask_utils.area(rle)) if iou_type == "segm" else float((x1 - x0) * (y1 - y0)),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": rle})
        for c, s, m in p:
            x0, y0, x1, y1 = box_of(m)
            results.append({"image_id": i, "category_id": c, "score": s, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "segmentation": mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c} for c in range(NUM_CLASSES)]}
    gt.createIndex()
    dt = gt.loadRes(copy.deepcopy(results))
    ev = COCOeval(gt, dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    precision = ev.eval["precision"][:, :, :, 0, 2]  # IoU x recall x class, area all, 100 detections
    per_class = [float(np.mean(precision[:, :, k][precision[:, :, k] > -1])) if (precision[:, :, k] > -1).any()
                 else float("nan") for k in range(NUM_CLASSES)]
    return ev.stats, per_class


def test_box_and_mask_ap_equal_pycocotools_on_a_hand_made_case():
    truth, preds = case()
    metric = InstanceAP(NUM_CLASSES, backend="pycocotools")
    outputs, targets = as_tensors(truth, preds)
    metric.update(outputs[:2], targets[:2])
    metric.update(outputs[2:], targets[2:])
    scores = metric.scores()
    for iou_type in ("bbox", "segm"):
        stats, per_class = pycocotools_stats(truth, preds, iou_type)
        s = scores[iou_type]
        got = [s["mAP"], s["AP50"], s["AP75"], s["APs"], s["APm"], s["APl"]]
        expected = [v if v >= 0 else float("nan") for v in stats[:6]]
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert s["AR100"] == pytest.approx(stats[8], abs=1e-6)
        np.testing.assert_allclose(s["AP"], per_class, atol=1e-6)
    # the ring's mask is far worse than its box: mask AP below box AP, as pycocotools says too
    assert scores["segm"]["AP"][0] < scores["bbox"]["AP"][0]
    assert math.isnan(scores["bbox"]["APl"])  # no large object: undefined, not 0


def _ddp_worker(rank, world, port, parts, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metric = InstanceAP(NUM_CLASSES, backend="pycocotools")
        outputs, targets = parts[rank]
        if outputs:
            metric.update(outputs, targets)
        scores = metric.scores()
        if rank == 0:
            queue.put(scores)
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_with_different_numbers_of_images_give_the_single_process_scores():
    truth, preds = case()
    outputs, targets = as_tensors(truth, preds)
    single = InstanceAP(NUM_CLASSES, backend="pycocotools")
    single.update(outputs, targets)
    parts = [(outputs[:2], targets[:2]), (outputs[2:], targets[2:])]  # 2 images and 1
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    mp.start_processes(_ddp_worker, args=(2, port, parts, queue), nprocs=2, join=True, start_method="fork")
    ddp = queue.get(timeout=60)
    expected = single.scores()
    for kind in ("bbox", "segm"):
        for key in ("mAP", "AP50", "AP75", "APs", "AR100"):
            assert ddp[kind][key] == pytest.approx(expected[kind][key], abs=1e-9)


def test_instance_scores_get_ap_tables():
    truth, preds = case()
    metric = InstanceAP(NUM_CLASSES)
    metric.update(*as_tensors(truth, preds))
    scores = {"sota": metric.scores()}
    scores["sota"]["rotated"] = {"iou_threshold": 0.5, "mAP_voc07": 0.5, "mAP_voc12": 0.6,
                                 "AP_voc07": [0.5, float("nan"), 0.5], "AP_voc12": [0.6, float("nan"), 0.6]}
    table = scores_table(scores, {"sota": ["car", "ship", "plane"]})
    assert table == ap_table(scores, {"sota": ["car", "ship", "plane"]})
    assert "| boxes | mAP | AP50 | AP75 | APs | APm | APl |" in table
    assert f"| segm | {100 * scores['sota']['segm']['mAP']:.2f} |" in table
    assert "| class | bbox AP | segm AP | rotated AP (VOC07) | rotated AP (VOC12) |" in table
    assert "| ship | " in table and "mAP 50.00 (VOC07 11-point), 60.00 (VOC12 area)" in table


# --- rotated boxes ------------------------------------------------------------------------------------

def square(cx, cy, side, angle=0.0):
    c, s = math.cos(angle), math.sin(angle)
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2
    return (half @ np.array([[c, -s], [s, c]]).T + [cx, cy]).reshape(8)


def test_rotated_iou_of_boxes_with_known_overlaps():
    a = square(0, 0, 2)
    b = np.stack([a, square(1, 0, 2), square(0, 0, 2, math.pi / 4), square(5, 5, 2), square(0, 0, 1),
                  square(2, 0, 2)])
    # same, half shifted (2/6), rotated 45 degrees (octagon 8(sqrt2 - 1) of union 8 - that), apart,
    # inside (1/4), touching along an edge (0)
    octagon = 8 * (math.sqrt(2) - 1)
    expected = [1.0, 1 / 3, octagon / (8 - octagon), 0.0, 0.25, 0.0]
    np.testing.assert_allclose(rotated_iou(a[None], b)[0], expected, atol=1e-9)
    np.testing.assert_allclose(rotated_iou(b, a[None])[:, 0], expected, atol=1e-9)
    assert rotated_iou(np.zeros((0, 8)), b).shape == (0, 6)
    # a self-intersecting quadrilateral (corners out of order) counts as its convex hull
    bowtie = a.reshape(4, 2)[[0, 2, 1, 3]].reshape(8)
    assert rotated_iou(bowtie[None], a[None])[0, 0] == pytest.approx(1.0)


def test_voc_ap_of_a_known_curve():
    recall, precision = [1 / 3, 1 / 3, 2 / 3, 2 / 3], [1, 0.5, 2 / 3, 0.5]
    assert voc_ap(recall, precision, "voc12") == pytest.approx(5 / 9)   # 1/3 * 1 + 1/3 * 2/3
    assert voc_ap(recall, precision, "voc07") == pytest.approx(6 / 11)  # 4 points at 1, 3 at 2/3
    with pytest.raises(ValueError, match="voc10"):
        voc_ap(recall, precision, "voc10")


def test_rotated_map_matches_greedily_by_score_across_images():
    g0 = [square(10, 10, 4, 0.3), square(30, 30, 6, 1.0)]
    g1 = [square(50, 50, 8, 0.2)]
    truths = [{"rboxes": np.stack(g0), "labels": np.array([0, 0])},
              {"rboxes": np.stack(g1), "labels": np.array([0])}]
    detections = [
        {"rboxes": np.stack([g0[0], square(10.2, 10, 4, 0.3), square(70, 70, 4), square(30, 30, 6, 1.0)]),
         "scores": np.array([0.9, 0.8, 0.6, 0.3]), "labels": np.array([0, 0, 0, 1])},
        {"rboxes": np.stack([square(50.5, 50, 8, 0.2)]), "scores": np.array([0.7]), "labels": np.array([0])},
    ]
    out = rotated_map(detections, truths, num_classes=2)
    # class 0 in score order: tp (0.9), duplicate fp (0.8), tp (0.7, other image), fp (0.6); 3 boxes
    assert out["AP_voc12"][0] == pytest.approx(5 / 9) and out["AP_voc07"][0] == pytest.approx(6 / 11)
    assert math.isnan(out["AP_voc12"][1])  # no ground truth of class 1: left out of the mean
    assert out["mAP_voc12"] == pytest.approx(5 / 9) and out["iou_threshold"] == 0.5


def test_rbox_of_a_mask_is_its_minimum_area_rectangle():
    mask = np.zeros((40, 40), bool)
    mask[10:20, 5:30] = True
    corners = mask_rbox(mask, [5, 10, 30, 20]).reshape(4, 2)
    np.testing.assert_allclose(sorted(map(tuple, corners)), [(5, 10), (5, 20), (30, 10), (30, 20)])
    np.testing.assert_allclose(mask_rbox(np.zeros((4, 4), bool), [1, 2, 3, 4]), [1, 2, 3, 2, 3, 4, 1, 4])


def test_evaluate_prints_box_mask_and_rotated_ap_per_subset():
    from samrs.detection.evaluate import instance_headline

    scores = {"sota": {"bbox": {"mAP": 0.125, "AP50": 0.3}, "segm": {"mAP": 0.1, "AP50": 0.25},
                       "rotated": {"mAP_voc07": 0.2, "mAP_voc12": 0.21}},
              "fast": {"bbox": {"mAP": 0.0, "AP50": 0.05}, "segm": {"mAP": 0.01, "AP50": 0.02}}}
    assert instance_headline(scores).splitlines() == [
        "sota: bbox mAP 12.50 / AP50 30.00, segm mAP 10.00 / AP50 25.00, rotated mAP_voc07 20.00 / mAP_voc12 21.00",
        "  fast: bbox mAP 0.00 / AP50 5.00, segm mAP 1.00 / AP50 2.00"]
