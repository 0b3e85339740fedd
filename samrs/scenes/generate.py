"""Draw overhead-looking scenes: a textured background with class-shaped objects and exact masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import cv2
import numpy as np

from samrs.classes import SubsetClasses, subset_classes
from samrs.geometry import fill_polygon, mask_hbox, mask_min_area_rect
from samrs.scenes.shapes import class_color, family_of, outline


@dataclass
class SceneObject:
    """One drawn object: its exact mask and the annotations a detection dataset would give it."""

    class_name: str
    class_id: int
    mask: np.ndarray  # (H, W) bool, exactly the pixels painted with the object
    corners: np.ndarray  # (4, 2) minimum-area rotated box around the mask's pixel squares
    hbox: np.ndarray  # (4,) pixel-edge box of the mask: x_min, y_min, x_max, y_max
    angle: float  # the object's heading, radians

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Scene:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: list[SceneObject] = field(default_factory=list)
    subset: str = ""

    def label_map(self) -> np.ndarray:
        """(H, W) uint8 class ids, 255 where no object is (objects never overlap)."""
        label = np.full(self.image.shape[:2], 255, dtype=np.uint8)
        for obj in self.objects:
            label[obj.mask] = obj.class_id
        return label


_BORDER = 2.0  # px kept free between every object's rotated box and the image border


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Fields, soil and roads: low-frequency colour patches plus fine grain."""
    base = np.array([rng.uniform(70, 120), rng.uniform(85, 130), rng.uniform(60, 100)])
    tint = np.array([rng.uniform(-30, 30) for _ in range(3)])
    field_mix = _smooth_noise(rng, h, w, 3)[..., None]
    grain = (_smooth_noise(rng, h, w, max(4, min(h, w) // 8)) - 0.5)[..., None] * 30
    img = base + field_mix * tint + grain + rng.normal(0, 4, (h, w, 1))
    for _ in range(rng.integers(0, 3)):  # a few roads; they are background, never labeled
        road = np.zeros((h, w), np.uint8)
        p0 = rng.uniform(0, 1, 2) * [w, h]
        p1 = rng.uniform(0, 1, 2) * [w, h]
        cv2.line(road, tuple(int(v) for v in p0), tuple(int(v) for v in p1), 1, max(2, min(h, w) // 40))
        img[road.astype(bool)] = rng.uniform(100, 140)
    return img


def _paint(img: np.ndarray, mask: np.ndarray, color: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the object with its colour, a light gradient and grain; darken its rim like a shadow edge."""
    ys, xs = np.nonzero(mask)
    shade = 1.0 + 0.12 * (xs - xs.mean()) / max(1.0, float(np.ptp(xs)) + 1)
    pixels = color[None, :] * shade[:, None] + rng.normal(0, 5, (xs.size, 3))
    img[ys, xs] = pixels
    rim = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    img[rim] *= 0.75


def _draw_object(rng, classes: SubsetClasses, class_id: int, h: int, w: int, occupied: np.ndarray):
    """Try to place one object of `class_id` on free ground; None when it does not fit."""
    name = classes.names[class_id]
    family = family_of(name)
    side = min(h, w)
    length = max(4.0, rng.uniform(*family.length) * side)
    angle = float(rng.uniform(0, np.pi))
    for _ in range(30):
        cx, cy = rng.uniform(length / 2 + 1, w - length / 2 - 1), rng.uniform(length / 2 + 1, h - length / 2 - 1)
        polys = outline(family, cx, cy, length, angle)
        mask = np.zeros((h, w), np.uint8)
        fill_polygon(mask, polys[0], 1)
        for extra in polys[1:]:
            fill_polygon(mask, extra, 0 if family.name == "ring" else 1)
        mask = mask.astype(bool)
        if mask.sum() < 4 or (mask & occupied).any():
            continue
        # Around the mask's pixel squares, not the outline: this box covers every mask pixel when
        # rasterised, whatever rounding did at the outline's edges.
        corners = mask_min_area_rect(mask)
        # Whole boxes: even grown by the formats' rounding step (1 px in DIOR-R), none leaves the image.
        if corners.min() < _BORDER or np.any(corners.max(axis=0) > (w - _BORDER, h - _BORDER)):
            continue
        return SceneObject(name, class_id, mask, corners, mask_hbox(mask), angle)
    return None


def generate_scene(
    subset: str | SubsetClasses = "sota",
    size: int | Sequence[int] = 128,
    num_objects: int | Sequence[int] = (4, 10),
    seed: int = 0,
    classes: Sequence[str] | None = None,
    name: str | None = None,
) -> Scene:
    """One scene of `size` (side or (height, width)) px with about `num_objects` non-touching objects.

    Objects that find no free place after 30 tries are left out, so crowded scenes hold fewer.
    `classes` restricts the class names drawn (default: every class of the subset).
    """
    classes_ = subset_classes(subset) if isinstance(subset, str) else subset
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    rng = np.random.default_rng(seed)
    n = num_objects if isinstance(num_objects, int) else int(rng.integers(num_objects[0], num_objects[1] + 1))
    pool = [classes_.names.index(c) for c in classes] if classes else list(range(classes_.num_classes))
    img = _background(rng, h, w)
    occupied = np.zeros((h, w), bool)
    objects = []
    for _ in range(n):
        obj = _draw_object(rng, classes_, int(rng.choice(pool)), h, w, occupied)
        if obj is None:
            continue
        _paint(img, obj.mask, class_color(obj.class_name), rng)
        occupied |= cv2.dilate(obj.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        objects.append(obj)
    image = np.clip(img, 0, 255).astype(np.uint8)
    return Scene(name or f"{classes_.name}_{seed:06d}", image, objects, classes_.name)


def generate_scenes(
    subset: str | SubsetClasses, count: int, seed: int = 0, **kwargs
) -> Iterator[Scene]:
    """`count` scenes named {subset}_{index:06d}; scene i uses seed `seed * 1_000_003 + i`."""
    classes_ = subset_classes(subset) if isinstance(subset, str) else subset
    for i in range(count):
        yield generate_scene(classes_, seed=seed * 1_000_003 + i, name=f"{classes_.name}_{i:06d}", **kwargs)
