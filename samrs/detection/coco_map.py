"""COCO AP of instance boxes and masks, per subset: torchmetrics' MeanAveragePrecision (pycocotools,
or faster_coco_eval when installed) with a DDP reduction that takes uneven shards, the scores as
samrs stores them, and their tables.

Scores of one subset: {"bbox": {...}, "segm": {...}}, each with "mAP" (AP at IoU 0.50:0.95), "AP50",
"AP75", "APs", "APm", "APl" (COCO's small < 32^2 <= medium < 96^2 <= large pixel areas), "AR<max>"
and "AP" (per class id; NaN for a class absent from the ground truth). Values COCO leaves undefined
(-1: no object of that size) are NaN. The subset's "rotated" entry (samrs.evaluate
evaluate.boxes=rotated) holds samrs.detection.rotated's scores.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.detection import MeanAveragePrecision

from samrs.errors import ConfigError

BACKENDS = ("auto", "pycocotools", "faster_coco_eval")
IOU_TYPES = ("bbox", "segm")
SUMMARY = {"mAP": "map", "AP50": "map_50", "AP75": "map_75", "APs": "map_small", "APm": "map_medium",
           "APl": "map_large"}


def resolve_backend(backend: str) -> str:
    """`auto`: faster_coco_eval when it is installed (faster on many detections), else pycocotools."""
    if backend not in BACKENDS:
        raise ConfigError(f"model.metric.backend={backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
    return backend


def _value(x: torch.Tensor) -> float:
    v = float(x)
    return v if v >= 0 else float("nan")


class InstanceAP(MeanAveragePrecision):
    """COCO bbox and segm AP of one subset with `num_classes` classes.

    `update(preds, targets)`: per image, preds {"boxes" (N, 4) x0 y0 x1 y1, "scores", "labels" (class
    ids), "masks" (N, H, W) bool} and targets {"boxes", "labels", "masks", optional "iscrowd"}.
    `max_detections`: detections per image that count (COCO: 100; dense remote-sensing tiles hold
    more objects). Under DDP, each process's images are gathered whole (torch's all_gather_object),
    so ranks may hold different numbers of images (torchmetrics' own reduction needs equal ones).
    """

    def __init__(self, num_classes: int, backend: str = "auto", max_detections: int = 100) -> None:
        # COCOeval's own thresholds: torchmetrics' defaults come from float32 linspace (0.550000011...),
        # which moves matches and recall points that fall exactly on a threshold
        super().__init__(iou_type=IOU_TYPES, class_metrics=True, backend=resolve_backend(backend),
                         iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
                         rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
                         max_detection_thresholds=[1, 10, int(max_detections)])
        self.num_classes = num_classes
        self.warn_on_many_detections = False  # the model's detections_per_img already bounds them

    def update(self, preds: Sequence[Mapping[str, torch.Tensor]], target: Sequence[Mapping[str, torch.Tensor]]) -> None:
        preds = [{**p, "masks": p["masks"].bool()} for p in preds]
        target = [{k: t[k].bool() if k == "masks" else t[k] for k in ("boxes", "labels", "masks", "iscrowd") if k in t}
                  for t in target]
        super().update(preds, target)

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any = None) -> None:
        group = process_group or self.process_group
        local = {attr: [x.cpu() if torch.is_tensor(x) else x for x in getattr(self, attr)] for attr in self._defaults}
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        for attr in self._defaults:  # rank after rank: the images of every state stay aligned
            setattr(self, attr, [x for part in gathered for x in part[attr]])

    def scores(self) -> dict[str, dict[str, Any]]:
        """compute() as samrs stores it (see the module docstring)."""
        result = self.compute()
        classes = result["classes"].reshape(-1).tolist()
        max_det = self.max_detection_thresholds[-1]
        out = {}
        for iou_type in IOU_TYPES:
            s: dict[str, Any] = {name: _value(result[f"{iou_type}_{key}"]) for name, key in SUMMARY.items()}
            s[f"AR{max_det}"] = _value(result[f"{iou_type}_mar_{max_det}"])
            per_class = [float("nan")] * self.num_classes
            for c, v in zip(classes, result[f"{iou_type}_map_per_class"].reshape(-1).tolist()):
                if 0 <= c < self.num_classes:
                    per_class[c] = v if v >= 0 else float("nan")
            s["AP"] = per_class
            out[iou_type] = s
        return out


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value else f"{100 * value:.2f}"


SUMMARY_COLUMNS = ("mAP", "AP50", "AP75", "APs", "APm", "APl")


def class_rows(s: Mapping[str, Any], classes: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """Columns and per-class rows (AP per kind of box, fractions) of one subset's instance scores."""
    kinds = [k for k in IOU_TYPES if k in s]
    columns = ["class", *[f"{k} AP" for k in kinds]]
    rotated = s.get("rotated")
    if rotated:
        columns += ["rotated AP (VOC07)", "rotated AP (VOC12)"]
    rows = []
    for i, name in enumerate(classes):
        row = [name, *[s[k]["AP"][i] for k in kinds]]
        if rotated:
            row += [rotated["AP_voc07"][i], rotated["AP_voc12"][i]]
        rows.append(row)
    return columns, rows


def ap_table(scores: Mapping[str, Mapping[str, Any]], class_names: Mapping[str, Sequence[str]]) -> str:
    """Markdown: per subset, the COCO summary of boxes and masks (and rotated boxes), then AP per class
    (in %, '-' where a value is undefined)."""
    out = []
    for subset, s in scores.items():
        n = len(next(iter(s[k]["AP"] for k in IOU_TYPES if k in s)))
        names = list(class_names.get(subset) or map(str, range(n)))
        out += [f"## {subset}", "", "| boxes | " + " | ".join(SUMMARY_COLUMNS) + " |",
                "|---|" + "---:|" * len(SUMMARY_COLUMNS)]
        out += [f"| {kind} | " + " | ".join(_percent(s[kind][c]) for c in SUMMARY_COLUMNS) + " |"
                for kind in IOU_TYPES if kind in s]
        rotated = s.get("rotated")
        if rotated:
            out += ["", f"rotated boxes from the masks, IoU > {rotated['iou_threshold']}: mAP {_percent(rotated['mAP_voc07'])} "
                    f"(VOC07 11-point), {_percent(rotated['mAP_voc12'])} (VOC12 area)"]
        columns, rows = class_rows(s, names)
        out += ["", "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
        out += ["| " + " | ".join([row[0], *map(_percent, row[1:])]) + " |" for row in rows]
        out.append("")
    return "\n".join(out)


def is_instance_scores(scores: Mapping[str, Any]) -> bool:
    """True for one subset's instance scores (as opposed to the semantic task's)."""
    return any(k in scores for k in IOU_TYPES)
