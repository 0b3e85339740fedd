"""Objects and SAM references shared by the tests of samrs.labeling.sam."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from samrs.labeling.sam.frames import SamFrame
from samrs.labeling.sam.prompts import PromptSpec, build_prompts
from samrs.sources.records import ObjectRecord


def box_object(x0: float, y0: float, x1: float, y1: float, class_id: int | None = 0) -> ObjectRecord:
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return ObjectRecord("thing", class_id, corners, np.array([x0, y0, x1, y1], dtype=np.float64))


def rotated_object(cx: float, cy: float, w: float, h: float, degrees: float, class_id: int | None = 0) -> ObjectRecord:
    a = np.deg2rad(degrees)
    axes = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    half = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    corners = np.array([cx, cy]) + half @ axes
    hbox = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
    return ObjectRecord("thing", class_id, corners, hbox)


def random_objects(rng: np.random.Generator, height: int, width: int, count: int) -> list[ObjectRecord]:
    """Rotated boxes of assorted sizes inside a (height, width) image."""
    out = []
    for _ in range(count):
        w, h = rng.uniform(3, width / 3), rng.uniform(3, height / 3)
        cx, cy = rng.uniform(w / 2, width - w / 2), rng.uniform(h / 2, height - h / 2)
        obj = rotated_object(cx, cy, w, h, rng.uniform(0, 90))
        obj.corners = obj.corners.clip(0, [width, height])
        obj.hbox = np.concatenate([obj.corners.min(axis=0), obj.corners.max(axis=0)])
        out.append(obj)
    return out


def sam_reference(
    predictor: SamPredictor, spec: PromptSpec, objects: list[ObjectRecord], frame: SamFrame, multimask: bool
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's own full-size mask logits (N, C, H, W) and predicted IoUs (N, C), via SamPredictor.predict_torch."""
    prompts = build_prompts(spec, objects, frame)
    points, boxes, masks = prompts.encoder_inputs(np.arange(len(objects)), torch.device("cpu"))
    with torch.no_grad():
        full, iou, _ = predictor.predict_torch(
            points[0] if points else None,
            points[1] if points else None,
            boxes,
            masks,
            multimask_output=multimask,
            return_logits=True,
        )
    return full.numpy(), iou.numpy()


def predictor_for(sam: Sam, image: np.ndarray) -> SamPredictor:
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return predictor


# The engine computes SAM's logits in another order, so pixels whose logit is within float rounding
# of 0 may fall either way (random tiny models have many such pixels).
ROUNDING = 1e-4


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else (a & b).sum() / union


def assert_same_mask(got: np.ndarray, logits: np.ndarray, where: np.ndarray | None = None) -> None:
    """got equals logits > 0 (inside `where`) except at pixels within rounding of 0; IoU >= 0.99."""
    expected = logits > 0
    if where is not None:
        expected &= where
        assert not (got & ~where).any()
    differ = got != expected
    assert not (differ & (np.abs(logits) > ROUNDING)).any()
    if (got | expected).sum() >= 500:
        assert iou(got, expected) >= 0.99


def region_mask(shape: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    out[y0:y1, x0:x1] = True
    return out
