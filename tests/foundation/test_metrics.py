"""mmseg-style metrics against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs.metrics import SegmentationMetrics


def _reference(preds: list[np.ndarray], labels: list[np.ndarray], n: int, ignore: int = 255):
    inter = np.zeros(n)
    area_p = np.zeros(n)
    area_l = np.zeros(n)
    for p, l in zip(preds, labels):
        keep = l != ignore
        p, l = p[keep], l[keep]
        for c in range(n):
            inter[c] += np.sum((p == c) & (l == c))
            area_p[c] += np.sum(p == c)
            area_l[c] += np.sum(l == c)
    union = area_p + area_l - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
        f1 = np.where(area_p + area_l > 0, 2 * inter / (area_p + area_l), np.nan)
    return iou, f1, inter.sum() / area_l.sum()


def test_scores_equal_an_independent_computation_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    n = 6
    metric = SegmentationMetrics(n)
    preds, labels = [], []
    for _ in range(4):
        label = rng.integers(0, 4, (2, 16, 16))  # classes 4 and 5 never in the labels
        label[rng.random(label.shape) < 0.2] = 255
        pred = rng.integers(0, 5, (2, 16, 16))  # class 4 predicted though absent; 5 absent everywhere
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        preds.append(pred)
        labels.append(label)
    scores = metric.compute()
    iou, f1, oa = _reference(preds, labels, n)
    assert np.allclose(scores["IoU"].numpy(), iou, equal_nan=True)
    assert np.isnan(scores["IoU"][5]) and scores["IoU"][4] == 0
    assert np.isclose(scores["mIoU"].item(), np.nanmean(iou))
    assert np.allclose(scores["F1"].numpy(), f1, equal_nan=True)
    assert np.isclose(scores["OA"].item(), oa)


def test_absent_classes_count_as_zero_as_the_official_scripts():
    """The official scripts' IoU = I / (U + 1e-10) and accuracy = I / (T + 1e-10): 0 for a class absent
    from labels and predictions, kept in the means; F1 stays NaN (their nanmean skips it)."""
    label = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 1], [1, 1]]])  # class 2 is in neither
    skip = SegmentationMetrics(3)
    zero = SegmentationMetrics(3, absent_classes="zero")
    for metric in (skip, zero):
        metric.update(pred, label)
    a, b = skip.compute(), zero.compute()
    assert np.isnan(a["IoU"][2]) and b["IoU"][2] == 0 and b["Acc"][2] == 0
    assert np.isclose(a["mIoU"].item(), (0.5 + 2 / 3) / 2) and np.isclose(b["mIoU"].item(), (0.5 + 2 / 3) / 3)
    assert np.isnan(b["F1"][2]) and np.isclose(b["mF1"].item(), a["mF1"].item())
    with pytest.raises(ValueError, match="model.absent_classes='nan'; choose one of skip, zero"):
        SegmentationMetrics(3, absent_classes="nan")


def test_logits_are_argmaxed_and_excluded_classes_leave_the_means():
    label = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 0] = logits[0, 2, 1, 1] = 5
    metric = SegmentationMetrics(3, exclude=[0])
    metric.update(logits, label)
    s = metric.compute()
    assert s["IoU"].tolist() == [1.0, 0.5, 0.5]
    assert np.isclose(s["mIoU"].item(), 0.5)  # class 0 excluded from the mean


def test_written_scores_are_strict_json_with_null_for_absent_classes(tmp_path):
    import json

    from samrs.metrics import write_scores

    nan = float("nan")
    scores = {"potsdam": {"IoU": [0.5, nan], "F1": [0.6, nan], "Acc": [0.7, nan], "mIoU": 0.5, "mF1": 0.6,
                          "mAcc": 0.7, "OA": float("inf")}}
    path = write_scores(tmp_path, scores, {"potsdam": ["a", "b"]}, split="val")

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    report = json.loads(path.read_text(), parse_constant=refuse)  # what strict parsers do with NaN
    assert report["scores"]["potsdam"] == {"IoU": [0.5, None], "F1": [0.6, None], "Acc": [0.7, None], "mIoU": 0.5,
                                           "mF1": 0.6, "mAcc": 0.7, "OA": None}
    assert report["split"] == "val" and report["class_names"] == {"potsdam": ["a", "b"]}
    assert "| b | - |" in (tmp_path / "metrics.md").read_text()
