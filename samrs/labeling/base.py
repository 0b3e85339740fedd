"""What a labeler returns: one mask per object, stored as a crop around the object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from samrs.sources.records import ImageRecord, MaskCrop


@dataclass
class InstanceMask(MaskCrop):
    """The mask of one object: a MaskCrop (boolean crop placed at (x0, y0) in the image) and its object.

    Crops keep memory proportional to object size: a 1024x1024 tile with 2000 vehicles never holds
    2000 full-size masks.
    """

    object_index: int  # index into ImageRecord.objects
    class_id: int
    score: float | None = None  # SAM's predicted IoU; None for model-free labelers
    prompt: str = ""
    outside: int = 0  # predicted pixels outside the kept region around the box (counted, dropped)
    concept_score: float | None = None  # SAM 3 (prompt hbox_text): how surely the model sees the class there
    dropped: str = ""  # why the labeler drops this object (not written; listed in report.json)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


class Labeler(Protocol):
    """Turns images and their objects into instance masks; batched so models can be efficient.

    A labeler may also have a `meta` dict (property or method: prompt, model, checkpoint hash,
    settings). The label job writes it into meta.json, and a resumed run must show the same values
    (but for the few that leave masks alone, `samrs.labeling.job.NOT_DECIDING`). Without it,
    meta.json gets `"prompt": null`.
    """

    name: str

    def label(self, images: Sequence[np.ndarray], records: Sequence[ImageRecord]) -> list[list[InstanceMask]]:
        """For each (H, W, 3) uint8 image and its record, one InstanceMask per labeled object."""
        ...
