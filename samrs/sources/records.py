"""The one record every reader produces and every labeler consumes.

Coordinates are pixels of the image the record describes (of the tile, after tiling), x to the
right, y down, with (0, 0) the top-left corner of the top-left pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class ObjectRecord:
    """One annotated object."""

    name: str  # class name as the source file spells it
    class_id: int | None  # id in the target subset's class list; None when the name is unknown
    corners: np.ndarray  # (4, 2) float: the rotated box, corners in file order
    hbox: np.ndarray  # (4,) float x_min, y_min, x_max, y_max: the horizontal box
    difficult: int = 0
    truncated: bool = False
    # The object's region when it is not the rotated box itself: the box clipped to a tile
    # (a convex polygon of 3-8 vertices), or None for the whole box.
    polygon: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def region(self) -> np.ndarray:
        """(K, 2) polygon of the object's region: the clipped polygon, or the rotated box."""
        return self.corners if self.polygon is None else self.polygon

    def center(self) -> np.ndarray:
        """(2,) centre of the object: the centroid of its region's vertices."""
        return self.region().mean(axis=0)


@dataclass
class MaskCrop:
    """A boolean mask cropped to its object, placed at (x0, y0) in its image: ground truth kept in
    proportion to the object, not the image."""

    mask: np.ndarray  # (h, w) bool; (0, 0) for an object without a pixel
    x0: int
    y0: int

    def full(self, height: int, width: int) -> np.ndarray:
        """The mask pasted into an all-False (height, width) array."""
        out = np.zeros((height, width), dtype=bool)
        h, w = self.mask.shape
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = self.mask
        return out


@dataclass
class ImageRecord:
    """One image (or tile) and its objects."""

    name: str  # output name: the file stem, or {stem}__{size}__{x}___{y} for a tile
    image_path: Path | None
    width: int
    height: int
    objects: list[ObjectRecord] = field(default_factory=list)
    source: str = ""  # which reader made it (dota, dior, fair1m, hrsc2016, isaid, generated)
    offset: tuple[int, int] = (0, 0)  # the tile's top-left (x, y) in the source image
    annotation_path: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)
