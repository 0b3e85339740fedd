"""Segmentation metrics as mmseg computes them (DESIGN.md "Metrics").

Intersection and union are summed over the whole evaluation set (a confusion matrix), pixels equal
to the ignore index are left out, and classes absent from both prediction and label are left out of
the means (their IoU is NaN, not 0, which torchmetrics' per-class output would report);
`absent_classes="zero"` counts their IoU and accuracy as 0 in the means instead, as the official
SAMRS scripts do (I / (U + 1e-10)).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from samrs.classes import IGNORE_INDEX
from samrs.errors import ConfigError
from samrs.utils.io import write_json, write_text

SCORES_JSON, SCORES_MD = "metrics.json", "metrics.md"


ABSENT_CLASSES = ("skip", "zero")


def check_absent_classes(value: str, key: str = "model.absent_classes") -> str:
    """`value` when it is a known way to count absent classes, else an error naming the config key."""
    if value not in ABSENT_CLASSES:
        raise ConfigError(f"{key}={value!r}; choose one of {', '.join(ABSENT_CLASSES)}")
    return value


def scores_from_confusion(confmat: torch.Tensor, absent_classes: str = "skip") -> dict[str, torch.Tensor]:
    """Per-class IoU, F1, precision, recall, accuracy; OA; means over present classes.

    `confmat[t, p]` counts pixels of true class t predicted as p. Per-class values are NaN for a
    class absent from both label and prediction (IoU/F1) or from the label (accuracy/recall); with
    `absent_classes="zero"` IoU and accuracy are 0 there (counted in the means, as the official code).
    """
    check_absent_classes(absent_classes)
    cm = confmat.double()
    tp = cm.diag()
    label_area = cm.sum(dim=1)
    pred_area = cm.sum(dim=0)
    union = label_area + pred_area - tp
    nan = torch.tensor(float("nan"), dtype=cm.dtype, device=cm.device)
    absent = nan if absent_classes == "skip" else torch.zeros_like(nan)
    iou = torch.where(union > 0, tp / union.clamp(min=1), absent)
    f1 = torch.where(union > 0, 2 * tp / (label_area + pred_area).clamp(min=1), nan)
    recall = torch.where(label_area > 0, tp / label_area.clamp(min=1), absent)
    precision = torch.where(pred_area > 0, tp / pred_area.clamp(min=1), nan)
    total = cm.sum()
    return {
        "IoU": iou,
        "F1": f1,
        "Acc": recall,
        "Precision": precision,
        "mIoU": iou.nanmean(),
        "mF1": f1.nanmean(),
        "mAcc": recall.nanmean(),
        "OA": tp.sum() / total if total > 0 else nan,
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """torchmetrics' confusion matrix (DDP-synchronised) that reports mmseg-style scores.

    `exclude` lists class ids left out of the means and of OA, which then counts the pixels labelled
    with the other classes (iSAID's background, as the official SAMRS code); their per-class values
    are still reported. `absent_classes`: see `scores_from_confusion`.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, exclude: Sequence[int] = (),
                 absent_classes: str = "skip") -> None:
        super().__init__(num_classes, ignore_index=ignore_index, validate_args=False)
        self.exclude = list(exclude)
        self.absent_classes = check_absent_classes(absent_classes)  # a bad choice fails here, not after training

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """preds: class ids (N, H, W) or logits (N, C, H, W); target: (N, H, W) with ignore pixels."""
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=1)
        super().update(preds, target)

    def compute(self) -> dict[str, torch.Tensor]:
        confmat = super().compute().double()
        scores = scores_from_confusion(confmat, self.absent_classes)
        if self.exclude:
            keep = torch.ones(self.num_classes, dtype=torch.bool, device=confmat.device)
            keep[self.exclude] = False
            for per_class, mean in (("IoU", "mIoU"), ("F1", "mF1"), ("Acc", "mAcc")):
                scores[mean] = scores[per_class][keep].nanmean()
            labelled = confmat.sum(dim=1)[keep].sum()
            scores["OA"] = confmat.diag()[keep].sum() / labelled if labelled > 0 else labelled.new_tensor(float("nan"))
        return scores


def scores_table(scores: Mapping[str, Mapping[str, Any]], class_names: Mapping[str, Sequence[str]]) -> str:
    """Markdown: per subset, a row per class with IoU / F1 / Acc in %, then the means and OA.

    `scores[subset]` holds the lists and numbers of `scores_from_confusion` (e.g. via .tolist()); the
    instance task's scores (box and mask AP) get samrs.detection's table instead.
    """
    from samrs.detection.coco_map import ap_table, is_instance_scores

    if any(is_instance_scores(s) for s in scores.values()):
        return ap_table(scores, class_names)
    out = []
    for subset, s in scores.items():
        names = list(class_names.get(subset) or range(len(s["IoU"])))
        out += [f"## {subset}", "", "| class | IoU | F1 | Acc |", "|---|---:|---:|---:|"]
        out += [f"| {name} | " + " | ".join(percent(s[k][i]) for k in ("IoU", "F1", "Acc")) + " |"
                for i, name in enumerate(names)]
        out += ["", "| mIoU | mF1 | mAcc | OA |", "|---:|---:|---:|---:|",
                "| " + " | ".join(percent(s[k]) for k in ("mIoU", "mF1", "mAcc", "OA")) + " |", ""]
    return "\n".join(out)


def percent(value: float | None) -> str:
    """'-' for a class absent from label and prediction (NaN), else a percentage."""
    return "-" if value is None or value != value else f"{100 * value:.2f}"


def write_scores(directory: str | os.PathLike, scores: Mapping[str, Mapping[str, Any]],
                 class_names: Mapping[str, Sequence[str]], **info: Any) -> Path:
    """metrics.json ({**info, "scores", "class_names"}) and metrics.md (`scores_table`) in `directory`,
    as the training job (its final validation) and samrs.evaluate write them; returns the JSON path."""
    directory = Path(directory)
    write_json(directory / SCORES_JSON, {**info, "scores": scores, "class_names": dict(class_names)})
    write_text(directory / SCORES_MD, scores_table(scores, class_names))
    return directory / SCORES_JSON
