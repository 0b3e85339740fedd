"""Model-free labelers: each object's mask is its annotated shape, filled.

They are the baselines SAM's masks are compared with, and they label a dataset without a
checkpoint. A pixel belongs to a shape when its centre lies inside (`samrs.geometry`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np

from samrs.geometry import box_corners, hbox_of, rasterize_polygon
from samrs.labeling.base import InstanceMask
from samrs.sources.records import ImageRecord, ObjectRecord


def polygon_instance(
    polygon: np.ndarray, height: int, width: int, object_index: int, class_id: int, prompt: str
) -> InstanceMask | None:
    """The pixels of `polygon` within a height x width image, as a crop; None when there are none."""
    x_min, y_min, x_max, y_max = hbox_of(polygon)
    # One pixel of margin around the box: cv2's 1/256 fixed point may round an edge centre in.
    x0, y0 = max(0, math.floor(x_min) - 1), max(0, math.floor(y_min) - 1)
    x1, y1 = min(width, math.ceil(x_max) + 1), min(height, math.ceil(y_max) + 1)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = rasterize_polygon(np.asarray(polygon, dtype=np.float64) - [x0, y0], y1 - y0, x1 - x0)
    if not mask.any():
        return None
    return InstanceMask(mask, x0, y0, object_index, class_id, prompt=prompt)


class _FillLabeler(ABC):
    """Fills one shape per object; objects of unknown class are left out."""

    name = ""

    @abstractmethod
    def shape(self, obj: ObjectRecord) -> np.ndarray:
        """(N, 2) polygon to fill for one object, in image pixels."""

    def label(self, images: Sequence[np.ndarray], records: Sequence[ImageRecord]) -> list[list[InstanceMask]]:
        out = []
        for image, record in zip(images, records):
            height, width = image.shape[:2]
            masks = (
                polygon_instance(self.shape(obj), height, width, i, obj.class_id, self.name)
                for i, obj in enumerate(record.objects)
                if obj.class_id is not None
            )
            out.append([m for m in masks if m is not None])
        return out


class BoxFillLabeler(_FillLabeler):
    """The horizontal box of each object."""

    name = "box_fill"

    def shape(self, obj: ObjectRecord) -> np.ndarray:
        return box_corners(obj.hbox)


class PolygonFillLabeler(_FillLabeler):
    """The rotated box of each object, or its polygon clipped to the tile."""

    name = "polygon_fill"

    def shape(self, obj: ObjectRecord) -> np.ndarray:
        return obj.region()
