"""The two label-quality means of SAMRS Table 1, over instances, overall and per class.

For instance i with predicted mask P_i and ground-truth mask G_i: I_i = |P_i ∩ G_i| and
U_i = |P_i ∪ G_i| pixels. mIoU_I = mean over instances of I_i / U_i (every instance weighs the same);
mIoU_P = sum I_i / sum U_i (every pixel weighs the same, so large objects dominate it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class QualityTotals:
    """Running sums of the instances of one group (all, or one class)."""

    instances: int = 0
    iou_sum: float = 0.0
    intersection: int = 0
    union: int = 0

    def add(self, intersection: int, union: int) -> float:
        """Count one instance; returns its IoU."""
        if union <= 0 or not 0 <= intersection <= union:
            raise ValueError(f"an instance needs 0 <= I <= U and U > 0, got I={intersection}, U={union}")
        iou = intersection / union
        self.instances += 1
        self.iou_sum += iou
        self.intersection += int(intersection)
        self.union += int(union)
        return iou

    @property
    def miou_i(self) -> float | None:
        return self.iou_sum / self.instances if self.instances else None

    @property
    def miou_p(self) -> float | None:
        return self.intersection / self.union if self.union else None

    def to_dict(self) -> dict[str, Any]:
        return {"instances": self.instances, "mIoU_I": self.miou_i, "mIoU_P": self.miou_p,
                "intersection": self.intersection, "union": self.union}


class QualityMeter:
    """Totals over every instance and per class (classes by id, reported by name)."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.overall = QualityTotals()
        self.classes: dict[int, QualityTotals] = {}

    def add(self, class_id: int, intersection: int, union: int) -> float:
        """Count one instance of class `class_id`; returns its IoU."""
        if not 0 <= class_id < len(self.class_names):
            raise ValueError(f"class id {class_id} is not in the class list ({len(self.class_names)} classes)")
        self.classes.setdefault(class_id, QualityTotals()).add(intersection, union)
        return self.overall.add(intersection, union)

    def per_class(self) -> dict[str, dict[str, Any]]:
        """Totals of each class that has instances, in class-id order."""
        return {self.class_names[c]: self.classes[c].to_dict() for c in sorted(self.classes)}
