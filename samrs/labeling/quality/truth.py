"""Ground-truth instance masks of a source, cut to the image (or tile) that was labeled.

A source has ground truth when it provides `instance_crops(record)`: one MaskCrop-like object
(`mask`, `x0`, `y0` in the record's image) per object of the record, or None for an object without
a mask. HRSC2016 (its segmented test images) and iSAID (its masks on the DOTA images) do; generated
scenes have them in both formats (`python -m samrs.scenes --format hrsc2016|dota`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from samrs.sources.base import Source
from samrs.sources.records import MaskCrop


class CropLike(Protocol):
    mask: np.ndarray
    x0: int
    y0: int


def has_truth(source: Source) -> bool:
    """Whether `source` provides ground-truth instance masks."""
    return callable(getattr(source, "instance_crops", None))


def crop_in_window(crop: CropLike, x: int, y: int, width: int, height: int) -> MaskCrop | None:
    """The pixels of `crop` (image coordinates) inside the width x height window at (x, y), as a
    crop in the window's coordinates; None when none of its pixels lies there."""
    h, w = crop.mask.shape
    x0, y0 = max(crop.x0, x), max(crop.y0, y)
    x1, y1 = min(crop.x0 + w, x + width), min(crop.y0 + h, y + height)
    if x1 <= x0 or y1 <= y0:
        return None
    part = crop.mask[y0 - crop.y0 : y1 - crop.y0, x0 - crop.x0 : x1 - crop.x0]
    return MaskCrop(part, x0 - x, y0 - y) if part.any() else None
