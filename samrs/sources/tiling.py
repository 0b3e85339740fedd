"""Cut large images into overlapping square tiles and clip their objects to each tile.

Windows (the BboxToolkit / mmrotate convention): `size` x `size`, stride `size - gap`, starting at
0 on each axis. At the right and bottom border the last window either

- `shift` (default): moves back to end exactly at the border, so every tile is image content and
  the last two windows overlap by more than `gap`; or
- `pad`: keeps its stride position and reaches past the border.

Every tile is `size` x `size`: pixels beyond the image (`pad`, or an image smaller than the window on
`shift`) are filled with `pad_value`, and the label job leaves them unlabeled (255). A tile is named
`{stem}__{size}__{x}___{y}`, (x, y) being its top-left offset in the source image, so a tile point
(u, v) is the source point (u + x, v + y).

Objects are clipped to the window (and the image) as polygons with shapely. An object keeps its
place in the tile when at least `min_visible` of its whole area (also of an object the image
border cut already) is inside; a clipped one is marked
`truncated`, its region becomes the clipped polygon, its rotated box the minimum-area rectangle of
that polygon and its horizontal box the box of the polygon (within the source's own box). Every
tile object keeps its index in the source record as `extras["source_index"]`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import shapely

from samrs.errors import ConfigError
from samrs.geometry import hbox_of, min_area_rect
from samrs.sources.records import ImageRecord, ObjectRecord

BORDERS = ("shift", "pad")
_FULL = 1.0 - 1e-9  # visible fractions above this count as the whole object


def window_starts(length: int, size: int, stride: int, border: str) -> list[int]:
    """Start offsets along one axis of `length` pixels."""
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride)) + [length - size]
    if border == "pad" and (length - size) % stride:
        starts[-1] = starts[-2] + stride
    return starts


def tile_name(stem: str, size: int, x: int, y: int) -> str:
    return f"{stem}__{size}__{x}___{y}"


def largest_polygon(geom: shapely.Geometry) -> shapely.Polygon | None:
    """The polygon of largest area in `geom` (a clip can touch along an edge); None if it has none."""
    parts = [g for g in shapely.get_parts(geom) if isinstance(g, shapely.Polygon) and g.area > 0]
    return max(parts, key=lambda g: g.area) if parts else None


@dataclass(frozen=True)
class Tiling:
    """How a source's images are cut: `size=None` keeps images whole."""

    size: int | None = None
    gap: int = 200
    border: str = "shift"
    pad_value: int = 0
    min_visible: float = 0.7

    def __post_init__(self) -> None:
        if self.border not in BORDERS:
            raise ConfigError(f"tiling.border={self.border!r}; choose one of {', '.join(BORDERS)}")
        if self.size is not None and not 0 <= self.gap < self.size:
            raise ConfigError(f"tiling.gap={self.gap} must be >= 0 and smaller than tiling.size={self.size}")
        if not 0.0 <= self.min_visible <= 1.0:
            raise ConfigError(f"tiling.min_visible={self.min_visible} must lie in [0, 1]")

    def windows(self, width: int, height: int) -> list[tuple[int, int]]:
        """Top-left (x, y) offsets of the tiles of a width x height image, row by row."""
        if self.size is None:
            return [(0, 0)]
        stride = self.size - self.gap
        xs = window_starts(width, self.size, stride, self.border)
        ys = window_starts(height, self.size, stride, self.border)
        return [(x, y) for y in ys for x in xs]

    def tile(self, record: ImageRecord, offsets: Sequence[tuple[int, int]] | None = None) -> list[ImageRecord]:
        """The tile records of `record` (objects clipped, coordinates in the tile); untiled: [record].
        `offsets`: only the tiles at these top-left offsets (of `windows`), e.g. one run of a scene's tiles."""
        if self.size is None:
            return [record]
        clipper = _Clipper(record.objects)
        tiles = []
        for x, y in self.windows(record.width, record.height) if offsets is None else offsets:
            view = (x, y, min(x + self.size, record.width), min(y + self.size, record.height))
            tiles.append(ImageRecord(
                name=tile_name(record.name, self.size, x, y),
                image_path=record.image_path,
                width=self.size,
                height=self.size,
                objects=clipper.clip(view, self.min_visible),
                source=record.source,
                offset=(x, y),
                annotation_path=record.annotation_path,
                extras={**record.extras, "source_name": record.name, "source_size": [record.width, record.height]},
            ))
        return tiles

    def crop(self, image: np.ndarray, tile: ImageRecord) -> np.ndarray:
        """The pixels of `tile` from its source `image`, padded with `pad_value` beyond the image."""
        if self.size is None:
            return image
        x, y = tile.offset
        part = image[y : y + self.size, x : x + self.size]
        if part.shape[:2] == (self.size, self.size):
            return np.ascontiguousarray(part)
        out = np.full((self.size, self.size) + image.shape[2:], self.pad_value, dtype=image.dtype)
        out[: part.shape[0], : part.shape[1]] = part
        return out


class _Clipper:
    """The objects of one image, prepared once for clipping to many windows."""

    def __init__(self, objects: list[ObjectRecord]) -> None:
        self.objects = objects
        regions = [np.asarray(o.region(), dtype=np.float64) for o in objects]
        self.boxes = np.array([hbox_of(r) for r in regions]).reshape(-1, 4)
        polys = [shapely.Polygon(r) if len(r) >= 3 else shapely.Polygon() for r in regions]
        # A box with corners out of order is a bow-tie; its convex hull is the box that was meant.
        self.polys = np.array([p if p.is_valid else p.convex_hull for p in polys], dtype=object)
        self.areas = shapely.area(self.polys) if len(objects) else np.zeros(0)
        # what min_visible is a fraction of: the whole object, also where the image border cut it (the
        # reader's `visible_fraction`, samrs.sources.common.ObjectChecker)
        visible = np.array([o.extras.get("visible_fraction", 1.0) for o in objects], dtype=np.float64)
        self.whole_areas = self.areas / np.maximum(visible, 1e-12)

    def clip(self, view: tuple[int, int, int, int], min_visible: float) -> list[ObjectRecord]:
        """Objects of the view (x0, y0, x1, y1), in its coordinates (origin (x0, y0))."""
        x0, y0, x1, y1 = view
        b = self.boxes
        touching = (b[:, 0] < x1) & (b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 3] > y0) & (self.areas > 0)
        inside = (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
        crossing = np.flatnonzero(touching & ~inside)
        clipped = dict(zip(crossing.tolist(), shapely.intersection(self.polys[crossing], shapely.box(*view))))
        offset = np.array([x0, y0], dtype=np.float64)
        out = []
        for i in np.flatnonzero(touching):
            obj = self.objects[i]
            if i not in clipped:  # wholly inside the view
                out.append(_shifted(obj, offset, i))
                continue
            poly = largest_polygon(clipped[i])
            if poly is None or poly.area / self.whole_areas[i] < min_visible:
                continue
            whole = poly.area / self.areas[i] >= _FULL  # the region is not cut any further
            out.append(_shifted(obj, offset, i) if whole else
                       _truncated(obj, poly, poly.area / self.whole_areas[i], offset, i))
        return out


def _truncated(obj: ObjectRecord, poly: shapely.Polygon, fraction: float, offset: np.ndarray, index: int) -> ObjectRecord:
    """Source object `index` cut to its visible polygon `poly`, in a tile whose origin is `offset`."""
    points = np.asarray(poly.exterior.coords, dtype=np.float64)[:-1]
    box = hbox_of(points)
    box[:2] = np.maximum(box[:2], obj.hbox[:2])
    box[2:] = np.minimum(box[2:], obj.hbox[2:])
    if (box[2:] <= box[:2]).any():  # a source box that misses the polygon: trust the polygon
        box = hbox_of(points)
    return replace(
        obj,
        corners=min_area_rect(points) - offset,
        hbox=box - np.tile(offset, 2),
        polygon=points - offset,
        truncated=True,
        extras={**obj.extras, "source_index": int(index), "visible_fraction": round(float(fraction), 4)},
    )


def _shifted(obj: ObjectRecord, offset: np.ndarray, index: int) -> ObjectRecord:
    """Source object `index` moved into a tile whose origin is `offset`, unclipped."""
    return replace(
        obj,
        corners=obj.corners - offset,
        hbox=obj.hbox - np.tile(offset, 2),
        polygon=None if obj.polygon is None else obj.polygon - offset,
        extras={**obj.extras, "source_index": int(index)},
    )

