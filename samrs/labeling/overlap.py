"""Which instance wins a pixel that several masks cover, when painting the label map."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from samrs.classes import IGNORE_INDEX
from samrs.errors import ConfigError
from samrs.labeling.base import InstanceMask

# Painting order per policy: the instance painted last wins its pixels.
POLICIES = ("smaller_on_top", "larger_on_top", "score", "file_order")


def paint_order(instances: Sequence[InstanceMask], policy: str = "smaller_on_top") -> list[int]:
    """Indices of `instances` in painting order (last painted is on top).

    smaller_on_top (default): small objects stay visible on large ones (a car on a bridge).
    larger_on_top: the reverse. score: the higher predicted IoU wins. file_order: the last instance in
    the annotation file wins, which is what the official SAMRS scripts did. Ties keep file order.
    """
    idx = list(range(len(instances)))
    if policy == "smaller_on_top":
        return sorted(idx, key=lambda i: -instances[i].area)
    if policy == "larger_on_top":
        return sorted(idx, key=lambda i: instances[i].area)
    if policy == "score":
        return sorted(idx, key=lambda i: instances[i].score if instances[i].score is not None else -np.inf)
    if policy == "file_order":
        return sorted(idx, key=lambda i: instances[i].object_index)
    raise ConfigError(f"unknown overlap policy {policy!r}; choose one of {', '.join(POLICIES)}")


def paint_label_map(
    instances: Sequence[InstanceMask], height: int, width: int, policy: str = "smaller_on_top"
) -> np.ndarray:
    """(H, W) uint8 label map: class id where a mask covers the pixel, 255 elsewhere."""
    label = np.full((height, width), IGNORE_INDEX, dtype=np.uint8)
    for i in paint_order(instances, policy):
        inst = instances[i]
        h, w = inst.mask.shape
        label[inst.y0 : inst.y0 + h, inst.x0 : inst.x0 + w][inst.mask] = inst.class_id
    return label


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W, 3) uint8 rendering of a label map; unlabeled (255) pixels are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return lut[label]
