"""The paper's SAM prompts (SAMRS Sec. 2.3) for a list of objects, in SAM's frames.

Prompt types, from an ObjectRecord `o` (image-frame coordinates):

- cp: the centre point `o.center()` with label 1 (foreground);
- hbox: the horizontal box `o.hbox`;
- rhbox: min/max over the vertices of `o.region()`: the 4 rotated corners, or for an object clipped
  to a tile its clipped polygon (so the box never reaches outside the tile);
- hbox_m, rbox_m, rhbox_m: mask prompts, +mask_value inside the region (the hbox, the rotated box /
  clipped polygon `o.region()`, the rhbox) and -mask_value outside, in SAM's low-res mask frame;
- text (SAM 3 only): the object's class name as a concept (`concept_text`), beside a box prompt.

A spec combines at most one point, one box and one mask prompt (SAM's prompt encoder takes one
box per prompt). Points and boxes are scaled into the input frame exactly as SamPredictor.predict
(ResizeLongestSide.apply_coords / apply_boxes) or the square families' processors send them; mask
regions go through the same scale into the low-res frame, so a box given in image pixels covers
the low-res cells under which the image encoder sees it. A low-res cell is inside when its centre is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from matplotlib.path import Path as PolygonPath

from samrs.errors import ConfigError
from samrs.geometry import hbox_of
from samrs.labeling.fill import box_corners
from samrs.labeling.sam.frames import SamFrame
from samrs.sources.records import ObjectRecord

POINT_PROMPTS = ("cp",)
BOX_PROMPTS = ("hbox", "rhbox")
MASK_PROMPTS = ("hbox_m", "rbox_m", "rhbox_m")
TEXT_PROMPTS = ("text",)
PROMPT_TYPES = POINT_PROMPTS + BOX_PROMPTS + MASK_PROMPTS + TEXT_PROMPTS


@dataclass(frozen=True)
class PromptSpec:
    """Which prompts to give SAM for every object, e.g. PromptSpec(["hbox", "cp"])."""

    types: tuple[str, ...]
    mask_value: float = 1000.0  # mask prompt logit inside the region (its negative outside)

    def __post_init__(self) -> None:
        types = tuple(str(t) for t in self.types)
        object.__setattr__(self, "types", types)
        unknown = [t for t in types if t not in PROMPT_TYPES]
        if not types or unknown:
            raise ConfigError(f"prompt types {list(types)}: give one or more of {list(PROMPT_TYPES)}")
        for family in (POINT_PROMPTS, BOX_PROMPTS, MASK_PROMPTS, TEXT_PROMPTS):
            if sum(t in family for t in types) > 1:
                raise ConfigError(
                    f"prompt types {list(types)}: at most one of {list(family)} (SAM takes one per prompt)"
                )
        if "text" in types and types[0] not in BOX_PROMPTS:
            raise ConfigError(f"prompt types {list(types)}: text (the class name) comes after a box, e.g. [hbox, text]")

    @property
    def name(self) -> str:
        return "+".join(self.types)

    def _pick(self, family: tuple[str, ...]) -> str | None:
        return next((t for t in self.types if t in family), None)

    @property
    def point(self) -> str | None:
        return self._pick(POINT_PROMPTS)

    @property
    def box(self) -> str | None:
        return self._pick(BOX_PROMPTS)

    @property
    def mask(self) -> str | None:
        return self._pick(MASK_PROMPTS)

    @property
    def text(self) -> bool:
        return "text" in self.types


def rhbox(obj: ObjectRecord) -> np.ndarray:
    """(4,) x_min, y_min, x_max, y_max over the vertices of the object's region."""
    return hbox_of(obj.region())


def _box(obj: ObjectRecord, kind: str) -> np.ndarray:
    return np.asarray(obj.hbox, dtype=np.float64) if kind == "hbox" else rhbox(obj)


def mask_region(obj: ObjectRecord, kind: str) -> np.ndarray:
    """(K, 2) image-frame polygon of a mask prompt."""
    if kind == "rbox_m":
        return np.asarray(obj.region(), dtype=np.float64)
    return box_corners(_box(obj, kind.removesuffix("_m")))


def rasterize_low_res(polygons: Sequence[np.ndarray], size: int, value: float) -> np.ndarray:
    """(B, 1, size, size) float32 mask prompts: +value in each low-res polygon, -value elsewhere.

    A cell is inside when its centre (j + 0.5, i + 0.5) is; only the polygon's bounding cells are tested.
    """
    out = np.full((len(polygons), 1, size, size), -value, dtype=np.float32)
    for i, polygon in enumerate(polygons):
        x0, y0 = np.clip(np.floor(polygon.min(axis=0)), 0, size).astype(int)
        x1, y1 = np.clip(np.ceil(polygon.max(axis=0)), 0, size).astype(int)
        if x1 <= x0 or y1 <= y0:
            continue
        centres = np.stack(np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5), axis=-1)
        inside = PolygonPath(polygon).contains_points(centres.reshape(-1, 2)).reshape(y1 - y0, x1 - x0)
        out[i, 0, y0:y1, x0:x1][inside] = value
    return out


@dataclass
class ObjectPrompts:
    """The prompts of one image's objects in SAM's input (points, boxes) and low-res (masks) frames."""

    spec: PromptSpec
    frame: SamFrame
    points: np.ndarray | None  # (N, 1, 2) input frame
    boxes: np.ndarray | None  # (N, 4) input frame
    mask_polygons: list[np.ndarray] | None  # N polygons (K, 2), low-res frame

    def encoder_inputs(
        self, index: np.ndarray, device: torch.device
    ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]:
        """(points, labels), boxes, mask inputs of the objects `index`, as SAM's PromptEncoder takes them."""
        points = boxes = masks = None
        if self.points is not None:
            coords = torch.as_tensor(self.points[index], dtype=torch.float32, device=device)
            labels = torch.ones(coords.shape[:2], dtype=torch.int, device=device)
            points = (coords, labels)
        if self.boxes is not None:
            boxes = torch.as_tensor(self.boxes[index], dtype=torch.float32, device=device)
        if self.mask_polygons is not None:
            polygons = [self.mask_polygons[i] for i in index]
            masks = torch.from_numpy(rasterize_low_res(polygons, self.frame.low_res, self.spec.mask_value))
            masks = masks.to(device)
        return points, boxes, masks


def build_prompts(spec: PromptSpec, objects: Sequence[ObjectRecord], frame: SamFrame) -> ObjectPrompts:
    """The prompts `spec` asks for, for every object, in SAM's frames."""
    points = boxes = polygons = None
    if spec.point is not None:
        centres = np.array([o.center() for o in objects], dtype=np.float64).reshape(-1, 1, 2)
        points = frame.to_input(centres)
    if spec.box is not None:
        image_boxes = np.array([_box(o, spec.box) for o in objects], dtype=np.float64).reshape(-1, 2, 2)
        boxes = frame.to_input(image_boxes).reshape(-1, 4)
    if spec.mask is not None:
        polygons = [frame.to_low_res(mask_region(o, spec.mask)) for o in objects]
    return ObjectPrompts(spec, frame, points, boxes, polygons)


def concept_text(name: str, names: dict[str, str] | None = None) -> str:
    """The text concept of a class: `names[name]` when given, else the name with _ and - as spaces
    ("small-vehicle" -> "small vehicle")."""
    if names and name in names:
        return str(names[name])
    return " ".join(name.replace("_", " ").replace("-", " ").split())
