"""SamLabeler: the Labeler protocol over ImageRecords for every SAM family, built by Hydra from `labeler=sam`."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from samrs.errors import ConfigError
from samrs.labeling.base import InstanceMask
from samrs.labeling.sam.build import LoadedSam
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.family import as_family
from samrs.labeling.sam.prompts import PromptSpec, concept_text
from samrs.sources.records import ImageRecord, ObjectRecord


def _check_object(record: ImageRecord, index: int, obj: ObjectRecord) -> None:
    arrays = {"corners": obj.corners, "hbox": obj.hbox, "polygon": obj.polygon}
    for field, value in arrays.items():
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            raise ValueError(f"{record.name}: object {index} ({obj.name}) has non-finite {field} {value!r}")


def _check_image(record: ImageRecord, image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{record.name}: SAM needs an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    if image.shape[:2] != (record.height, record.width):
        raise ValueError(
            f"{record.name}: image is {image.shape[1]}x{image.shape[0]} but the record says "
            f"{record.width}x{record.height}"
        )


class SamLabeler(torch.nn.Module):
    """SAM masks for every object with a class (objects whose class_id is None are not labeled).

    An nn.Module so that `.to(device)` (or Lightning, when it is a submodule of the predict module)
    moves SAM; `device` moves it at construction. Engine settings: see SamEngine and docs/sam.md.
    With a text prompt (SAM 3, `hbox_text`), objects whose concept score is below
    `min_concept_score` are dropped (InstanceMask.dropped says why; report.json lists them).
    """

    name = "sam"

    def __init__(self, sam: LoadedSam, prompt: PromptSpec, device: str | None = None,
                 min_concept_score: float | None = None, **engine_options: Any) -> None:
        """engine_options: SamEngine's (chunk_size, margin_frac, margin_px, outside_band_px,
        whole_image, multimask, precision, encoder_batch_size, max_window_pixels)."""
        super().__init__()
        self.sam = as_family(sam.model)
        self.source = sam
        self.engine = SamEngine(self.sam, prompt, **engine_options)
        if min_concept_score is not None and not prompt.text:
            raise ConfigError(f"min_concept_score={min_concept_score} needs a text prompt (prompt=hbox_text, sam=sam3); "
                              f"prompt {prompt.name} gives no concept score")
        self.min_concept_score = min_concept_score
        if device is not None:
            self.to(device)

    @property
    def meta(self) -> dict[str, Any]:
        """What meta.json records about the labeler: model, checkpoint hash, prompt and settings."""
        e = self.engine
        return {
            "labeler": self.name,
            **self.source.meta(),
            "prompt": e.prompt.name,
            "chunk_size": e.chunk_size,
            "margin_frac": e.margin_frac,
            "margin_px": e.margin_px,
            "outside_band_px": e.outside_band_px,
            "whole_image": e.whole_image,
            "multimask": e.multimask,
            "precision": e.precision if e.device.type == "cuda" else "fp32",
            "max_window_pixels": e.max_window_pixels,
            **self.sam.settings(),
            **({"min_concept_score": self.min_concept_score} if e.prompt.text else {}),
        }

    def label(self, images: Sequence[np.ndarray], records: Sequence[ImageRecord]) -> list[list[InstanceMask]]:
        if len(images) != len(records):
            raise ValueError(f"{len(images)} images for {len(records)} records")
        objects, indices = [], []
        for image, record in zip(images, records):
            _check_image(record, image)
            keep = [i for i, o in enumerate(record.objects) if o.class_id is not None]
            for i in keep:
                _check_object(record, i, record.objects[i])
            objects.append([record.objects[i] for i in keep])
            indices.append(keep)
        masks = self.engine.label(images, objects)
        for image_masks, keep, image_objects in zip(masks, indices, objects):
            for m in image_masks:
                self._judge_concept(m, image_objects[m.object_index])
                m.object_index = keep[m.object_index]
        return masks

    def _judge_concept(self, mask: InstanceMask, obj: ObjectRecord) -> None:
        limit = self.min_concept_score
        if limit is not None and mask.concept_score is not None and mask.concept_score < limit:
            text = concept_text(obj.name, getattr(self.sam, "concept_names", None))
            mask.dropped = (f"concept score {mask.concept_score:.3f} < min_concept_score {limit}: "
                            f"SAM 3 does not find a '{text}' at its box")
