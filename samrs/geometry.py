"""Polygon geometry shared by readers, tiling, generated scenes and labelers.

Continuous pixel coordinates: pixel (row i, column j) covers [j, j+1) x [i, i+1), its centre is
(j + 0.5, i + 0.5). A pixel belongs to a polygon when its centre lies inside: exactly, with
centres on a left or top edge inside and on a right or bottom edge outside, so that polygons
sharing an edge never share a pixel. (cv2.fillPoly also paints every pixel its edges touch:
a 2 x 2 px square would cover 9 pixels.)
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import shapely


def rasterize_polygon(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of the pixels whose centres lie inside `polygon` ((K, 2) x, y)."""
    mask = np.zeros((height, width), dtype=bool)
    fill_polygon(mask, polygon, True)
    return mask


def fill_polygon(canvas: np.ndarray, polygon: np.ndarray, value) -> None:
    """Paint `value` into `canvas` (H, W[, C]) on the pixels of `polygon`, in place.

    A scan line through the pixel centres of each row: the crossings with the polygon's edges,
    sorted, bound the runs of inside centres (even-odd rule, so self-intersecting quadrilaterals
    fill their two lobes). Cost grows with the polygon's box, not the canvas.
    """
    p = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(p).all():
        return
    height, width = canvas.shape[:2]
    (xmin, ymin), (xmax, ymax) = p.min(axis=0), p.max(axis=0)
    r0, r1 = max(0, math.ceil(ymin - 0.5)), min(height, math.ceil(ymax - 0.5))
    c0, c1 = max(0, math.ceil(xmin - 0.5)), min(width, math.ceil(xmax - 0.5))
    if r1 <= r0 or c1 <= c0:
        return
    yc = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
    a, b = p, np.roll(p, -1, axis=0)
    # Half-open in y: a centre on a vertex counts once; horizontal edges never cross.
    crosses = (yc >= np.minimum(a[:, 1], b[:, 1])) & (yc < np.maximum(a[:, 1], b[:, 1]))
    dy = np.where(b[:, 1] != a[:, 1], b[:, 1] - a[:, 1], 1.0)
    xs = np.where(crosses, a[:, 0] + (yc - a[:, 1]) / dy * (b[:, 0] - a[:, 0]), np.inf)
    xs.sort(axis=1)
    runs = int(crosses.sum(axis=1).max()) // 2  # runs of inside centres in the busiest row
    if runs == 0:
        return
    starts, ends = xs[:, 0 : 2 * runs : 2, None], xs[:, 1 : 2 * runs : 2, None]
    centres = np.arange(c0, c1, dtype=np.float64) + 0.5
    inside = ((centres >= starts) & (centres < ends)).any(axis=1)
    canvas[r0:r1, c0:c1][inside] = value


def polygon_area(polygon: np.ndarray) -> float:
    """Unsigned shoelace area of a simple polygon."""
    x, y = np.asarray(polygon, dtype=np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def hbox_of(points: np.ndarray) -> np.ndarray:
    """(4,) x_min, y_min, x_max, y_max over all corners (never 2 of 4, which is wrong when rotated)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def box_corners(hbox: np.ndarray) -> np.ndarray:
    """(4, 2) corners of a horizontal box x_min, y_min, x_max, y_max."""
    x0, y0, x1, y1 = np.asarray(hbox, dtype=np.float64)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def mask_hbox(mask: np.ndarray) -> np.ndarray:
    """(4,) pixel-edge box x_min, y_min, x_max, y_max of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float64)


def min_area_rect(points: np.ndarray) -> np.ndarray:
    """(4, 2) corners of the minimum-area rotated rectangle around `points`, clockwise on screen."""
    rect = cv2.minAreaRect(np.asarray(points, dtype=np.float32).reshape(-1, 1, 2))
    return cv2.boxPoints(rect).astype(np.float64)


def rotated_rect(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """(4, 2) corners of a w x h rectangle centred at (cx, cy), rotated by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=np.float64) / 2
    rot = np.array([[c, -s], [s, c]])
    return half @ rot.T + np.array([cx, cy])


def clip_polygon(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray | None:
    """(K, 2) convex polygon: `polygon` clipped to the rectangle [x0, x1] x [y0, y1]; None when
    nothing of positive area is left. Self-intersecting quadrilaterals (a few DOTA labels) are
    clipped through their convex hull, so the result is always one convex polygon."""
    shape = shapely.Polygon(np.asarray(polygon, dtype=np.float64)).convex_hull
    clipped = shapely.clip_by_rect(shape, x0, y0, x1, y1)
    if clipped.is_empty or clipped.area <= 0 or not isinstance(clipped, shapely.Polygon):
        return None
    return np.asarray(clipped.exterior.coords, dtype=np.float64)[:-1]


def mask_min_area_rect(mask: np.ndarray) -> np.ndarray:
    """(4, 2) minimum-area rotated rectangle around every pixel *square* of a non-empty mask, so
    that the rectangle rasterised with `rasterize_polygon` covers the whole mask."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        raise ValueError("empty mask has no rotated box")
    centres = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    # The outer pixels' four corners: every pixel square lies in their convex hull.
    squares = (centres[:, None, :] + np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)).reshape(-1, 2)
    return min_area_rect(squares)
