"""Rotated-box AP as the DOTA devkit computes it (dota_evaluation_task1), for comparing an instance
model with detectors on the sources' own task: detections are the minimum-area rectangles of the
predicted masks, ground truth the sources' rotated boxes.

Per class, detections of all images in descending score; each is matched to the ground-truth box of
its image and class it overlaps most (polygon IoU); above the threshold (strictly, 0.5) it is a true
positive unless that box was matched before, otherwise a false positive. AP from the cumulative
precision/recall curve by VOC07's 11-point rule or VOC12's area under the monotone envelope; the mAP
is the mean over classes with ground truth (a class without any has AP NaN, as in COCO).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import shapely

from samrs.geometry import mask_min_area_rect

METHODS = ("voc07", "voc12")


def _polygons(corners: np.ndarray) -> np.ndarray:
    """Shapely polygons of (N, 8) corner lists, as their convex hulls (DOTA has a few
    self-intersecting quadrilaterals)."""
    rings = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
    return shapely.convex_hull(shapely.polygons(rings)) if len(rings) else np.zeros(0, dtype=object)


def _hboxes(corners: np.ndarray) -> np.ndarray:
    pts = np.asarray(corners, dtype=np.float64).reshape(-1, 4, 2)
    return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)


def rotated_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of rotated boxes given as (N, 8) and (M, 8) corners (x0, y0, ..., x3, y3).

    Only pairs whose axis-aligned boxes meet are intersected, all of them in one vectorised shapely
    call (as the DOTA devkit, which first tests the horizontal boxes)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 8), np.asarray(b, np.float64).reshape(-1, 8)
    iou = np.zeros((len(a), len(b)))
    if not len(a) or not len(b):
        return iou
    ha, hb = _hboxes(a), _hboxes(b)
    meet = ((ha[:, None, 0] < hb[None, :, 2]) & (hb[None, :, 0] < ha[:, None, 2])
            & (ha[:, None, 1] < hb[None, :, 3]) & (hb[None, :, 1] < ha[:, None, 3]))
    i, j = np.nonzero(meet)
    if not len(i):
        return iou
    pa, pb = _polygons(a), _polygons(b)
    inter = shapely.area(shapely.intersection(pa[i], pb[j]))
    union = shapely.area(pa)[i] + shapely.area(pb)[j] - inter
    iou[i, j] = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return iou


def voc_ap(recall: np.ndarray, precision: np.ndarray, method: str = "voc12") -> float:
    """AP of a precision/recall curve: `voc07`, the mean of the best precision at recall >= 0, 0.1,
    ..., 1; `voc12`, the area under the curve made monotone (precision at r = the best at >= r)."""
    if method not in METHODS:
        raise ValueError(f"AP method {method!r}; choose one of {', '.join(METHODS)}")
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if method == "voc07":
        return float(sum(precision[recall >= t].max(initial=0.0) for t in np.linspace(0, 1, 11)) / 11)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _match(iou: np.ndarray, threshold: float) -> np.ndarray:
    """True positives of one image and class, detections in descending score (DOTA's greedy rule:
    the best-overlapping box only; a box already matched makes a false positive)."""
    taken = np.zeros(iou.shape[1], bool)
    tp = np.zeros(iou.shape[0], bool)
    if not iou.shape[1]:
        return tp
    best = iou.argmax(axis=1)
    for d, g in enumerate(best):
        if iou[d, g] > threshold and not taken[g]:
            tp[d] = taken[g] = True
    return tp


def rotated_map(detections: Sequence[Mapping[str, np.ndarray]], truths: Sequence[Mapping[str, np.ndarray]],
                num_classes: int, iou_threshold: float = 0.5) -> dict[str, Any]:
    """DOTA-style AP per class and mAP, by both methods.

    `detections[i]`: image i's {"rboxes" (N, 8), "scores" (N,), "labels" (N,)}; `truths[i]`: its
    {"rboxes" (M, 8), "labels" (M,)}. Returns {"mAP_voc07", "mAP_voc12", "AP_voc07", "AP_voc12"
    (per class), "iou_threshold"}."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} images of detections but {len(truths)} of ground truth")
    scores = [[] for _ in range(num_classes)]
    hits = [[] for _ in range(num_classes)]
    positives = np.zeros(num_classes, np.int64)
    for det, gt in zip(detections, truths):
        d_labels, g_labels = np.asarray(det["labels"]).reshape(-1), np.asarray(gt["labels"]).reshape(-1)
        positives += np.bincount(g_labels, minlength=num_classes)[:num_classes]
        iou = rotated_iou(det["rboxes"], gt["rboxes"])
        for c in np.unique(d_labels):
            d = np.flatnonzero(d_labels == c)
            d = d[np.argsort(-np.asarray(det["scores"])[d], kind="stable")]
            scores[c].append(np.asarray(det["scores"])[d])
            hits[c].append(_match(iou[np.ix_(d, np.flatnonzero(g_labels == c))], iou_threshold))
    ap = {m: np.full(num_classes, np.nan) for m in METHODS}
    for c in np.flatnonzero(positives):
        s = np.concatenate(scores[c]) if scores[c] else np.zeros(0)
        tp = np.concatenate(hits[c])[np.argsort(-s, kind="stable")] if scores[c] else np.zeros(0, bool)
        ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
        recall = ctp / positives[c]
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        for m in METHODS:
            ap[m][c] = voc_ap(recall, precision, m)
    return {"iou_threshold": iou_threshold,
            **{f"mAP_{m}": float(np.nanmean(ap[m])) if positives.any() else float("nan") for m in METHODS},
            **{f"AP_{m}": ap[m].tolist() for m in METHODS}}


def mask_rbox(mask: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """(8,) minimum-area rectangle (cv2.minAreaRect, around the pixel squares) of a predicted mask;
    the corners of its box when the mask is empty (a box whose mask fell below the threshold)."""
    if mask.any():
        return mask_min_area_rect(mask).reshape(8)
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([x0, y0, x1, y0, x1, y1, x0, y1], np.float64)

