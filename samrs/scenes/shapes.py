"""Class-dependent object shapes: each class name maps to a shape family, a size and a colour.

The families follow what the objects look like from above: small rotated rectangles for vehicles,
elongated pointed hulls for ships, crosses for planes, disks for storage tanks, coloured rectangles
for courts, rings for roundabouts, long bands for bridges and dams, and so on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from samrs.classes import normalize_name
from samrs.geometry import rotated_rect


@dataclass(frozen=True)
class Family:
    """A shape family: length range as a fraction of the image side, width/length aspect range."""

    name: str
    length: tuple[float, float]
    aspect: tuple[float, float]


FAMILIES = {
    "vehicle": Family("vehicle", (0.05, 0.08), (0.40, 0.55)),
    "large_vehicle": Family("large_vehicle", (0.09, 0.14), (0.30, 0.40)),
    "ship": Family("ship", (0.12, 0.24), (0.18, 0.28)),
    "plane": Family("plane", (0.14, 0.22), (0.85, 1.05)),
    "helicopter": Family("helicopter", (0.08, 0.11), (0.9, 1.0)),
    "disk": Family("disk", (0.06, 0.12), (1.0, 1.0)),
    "court": Family("court", (0.12, 0.20), (0.45, 0.60)),
    "track": Family("track", (0.22, 0.32), (0.45, 0.55)),
    "ring": Family("ring", (0.12, 0.18), (1.0, 1.0)),
    "band": Family("band", (0.25, 0.40), (0.10, 0.16)),
    "pier": Family("pier", (0.20, 0.30), (0.35, 0.45)),
    "large": Family("large", (0.25, 0.35), (0.55, 0.75)),
    "blob": Family("blob", (0.18, 0.28), (0.7, 0.9)),
    "cross": Family("cross", (0.14, 0.20), (1.0, 1.0)),
    "rect": Family("rect", (0.08, 0.14), (0.5, 0.8)),
}

# (keyword in the normalised class name, family); the first match wins, order matters.
_RULES = (
    ("helicopter", "helicopter"), ("helipad", "rect"), ("airport", "large"), ("plane", "plane"),
    ("boeing", "plane"), ("a220", "plane"), ("a321", "plane"), ("a330", "plane"), ("a350", "plane"),
    ("arj21", "plane"), ("c919", "plane"), ("ship", "ship"), ("boat", "ship"), ("tug", "ship"),
    ("largevehicle", "large_vehicle"), ("bus", "large_vehicle"), ("truck", "large_vehicle"),
    ("trailer", "large_vehicle"), ("vehicle", "vehicle"), ("car", "vehicle"), ("van", "vehicle"),
    ("tractor", "vehicle"), ("excavator", "vehicle"), ("tank", "disk"), ("chimney", "disk"),
    ("windmill", "cross"), ("intersection", "cross"), ("roundabout", "ring"), ("track", "track"),
    ("stadium", "track"), ("golf", "blob"), ("harbor", "pier"), ("bridge", "band"),
    ("overpass", "band"), ("dam", "band"), ("crane", "band"), ("station", "large"),
    ("expressway", "large"), ("court", "court"), ("field", "court"), ("diamond", "court"),
    ("pool", "court"),
)


def family_of(class_name: str) -> Family:
    key = normalize_name(class_name)
    for keyword, family in _RULES:
        if keyword in key:
            return FAMILIES[family]
    return FAMILIES["rect"]


def class_color(class_name: str) -> np.ndarray:
    """A class's base RGB colour, stable across runs (hash of the name), muted like real paint."""
    digest = hashlib.sha256(normalize_name(class_name).encode()).digest()
    rgb = np.frombuffer(digest[:3], dtype=np.uint8).astype(np.float64)
    return 40 + rgb * (200 / 255)


def outline(family: Family, cx: float, cy: float, length: float, angle: float) -> list[np.ndarray]:
    """Polygons (x, y) of one object; the object is their union. Rings return (outer, inner)."""
    width = length * family.aspect[0]
    if family.name in ("disk", "ring"):
        outer = _ellipse(cx, cy, length / 2, length / 2, 0.0)
        return [outer, _ellipse(cx, cy, length * 0.3, length * 0.3, 0.0)] if family.name == "ring" else [outer]
    if family.name == "track":
        return [_stadium(cx, cy, length, width, angle)]
    if family.name == "blob":
        return [_ellipse(cx, cy, length / 2, width / 2, angle)]
    if family.name == "ship":
        return [_hull(cx, cy, length, width, angle)]
    if family.name in ("plane", "helicopter"):
        return _cross(cx, cy, length, length * 0.14, length * (0.9 if family.name == "plane" else 1.0), angle, 0.12)
    if family.name == "cross":
        return _cross(cx, cy, length, length * 0.28, length, angle, 0.0)
    if family.name == "pier":
        return _pier(cx, cy, length, width, angle)
    return [rotated_rect(cx, cy, length, width, angle)]


def _rotate(points: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def _ellipse(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _rotate(np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1), cx, cy, angle)


def _stadium(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    r = width / 2
    t = np.linspace(-np.pi / 2, np.pi / 2, 16)
    right = np.stack([length / 2 - r + r * np.cos(t), r * np.sin(t)], axis=1)
    left = np.stack([-(length / 2 - r) - r * np.cos(t), -r * np.sin(t)], axis=1)
    return _rotate(np.concatenate([right, left]), cx, cy, angle)


def _hull(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """Ship hull: a rectangle with a pointed bow and a slightly narrowed stern."""
    l, w = length / 2, width / 2
    pts = np.array([[-l, -w * 0.85], [l * 0.55, -w], [l, 0.0], [l * 0.55, w], [-l, w * 0.85]])
    return _rotate(pts, cx, cy, angle)


def _cross(cx: float, cy: float, length: float, bar: float, span: float, angle: float,
           offset: float) -> list[np.ndarray]:
    """Fuselage along the angle plus wings across it, shifted forward by `offset` of the length."""
    body = rotated_rect(0, 0, length, bar, 0.0)
    wings = rotated_rect(length * offset, 0, bar * 1.4, span, 0.0)
    return [_rotate(p, cx, cy, angle) for p in (body, wings)]


def _pier(cx: float, cy: float, length: float, width: float, angle: float) -> list[np.ndarray]:
    """Harbour: a quay along the length with three jetties reaching out from it."""
    quay = rotated_rect(0, -width * 0.35, length, width * 0.3, 0.0)
    jetties = [rotated_rect(x, width * 0.1, length * 0.08, width * 0.7, 0.0) for x in (-length / 3, 0, length / 3)]
    return [_rotate(p, cx, cy, angle) for p in [quay, *jetties]]
