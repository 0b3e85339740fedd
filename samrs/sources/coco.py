"""Any COCO detection file: `annotations` (one JSON: images, annotations, categories) with its images
under `root` (the folder their `file_name` is relative to; default: the JSON's folder).

Per annotation: `bbox` [x, y, width, height] (pixels, the box's corner at x, y) is the object's
horizontal box; a polygon `segmentation` (a list of [x1, y1, x2, y2, ...] rings) makes the object's
region its largest ring (what polygon_fill paints and SAM's rbox prompts use), else the region is
the box. RLE segmentations are not read (the box is used). `iscrowd` annotations mark regions of
many objects and are skipped (`crowd_region`). Classes: the categories' names in id order, or
`classes` (a name the list lacks is `unknown_class`). Problems name the JSON file and the
annotation's id as the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from samrs.errors import BadFileError, MissingPathError
from samrs.classes import SubsetClasses
from samrs.geometry import box_corners, polygon_area
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import ObjectChecker, checked_size, unique_items
from samrs.sources.records import ImageRecord


class CocoSource(Source):
    name = "coco"

    def __init__(self, annotations: str, root: str | None = None, classes: Sequence[str] | None = None,
                 subset: str = "coco", use_segmentation: bool = True, min_box_area: float = 1.0) -> None:
        self.annotations = Path(annotations)
        if not self.annotations.is_file():
            raise MissingPathError(f"{self.annotations}: COCO annotation file not found (source.annotations)")
        self.root = Path(root) if root else self.annotations.parent
        if not self.root.is_dir():
            raise MissingPathError(f"{self.root}: image folder not found (source.root)")
        try:
            coco = json.loads(self.annotations.read_text(encoding="utf-8-sig"))
            self.categories = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
            self.images = {int(i["id"]): i for i in coco["images"]}
        except (ValueError, KeyError, TypeError) as err:
            raise BadFileError(f"{self.annotations}: not a COCO file with images and categories ({err})") from None
        self.by_image: dict[int, list[dict[str, Any]]] = {}
        self.orphans = []
        for ann in coco.get("annotations", []):
            image_id = ann.get("image_id")
            (self.by_image.setdefault(image_id, []) if image_id in self.images else self.orphans).append(ann)
        names = classes if classes is not None else [self.categories[k] for k in sorted(self.categories)]
        self.classes = SubsetClasses(subset, tuple(str(n) for n in names))
        self.use_segmentation, self.min_box_area = use_segmentation, min_box_area
        self._ids: dict[str, int] = {}

    def items(self, report: Report) -> list[SourceItem]:
        for ann in self.orphans:
            report(Problem(str(self.annotations), ann.get("id"), "missing_image",
                           f"annotation {ann.get('id')} names image {ann.get('image_id')}, which the file lacks"))
        items = []
        for image_id, entry in sorted(self.images.items()):
            path = self.root / entry["file_name"]
            if not path.is_file():
                report(Problem(str(path), None, "missing_image", f"image {image_id} ({entry['file_name']}) not found "
                                                                 f"in {self.root}"))
                continue
            name = Path(entry["file_name"]).stem
            self._ids[name] = image_id
            items.append(SourceItem(name, path, self.annotations))
        return unique_items(items)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        entry = self.images[self._ids[item.name]]
        given = (entry["width"], entry["height"]) if "width" in entry and "height" in entry else None
        size = checked_size(item.image_path, given, self.annotations, None, report)
        if size is None:
            return None
        checker = ObjectChecker(self.classes, size[0], size[1], self.annotations, report, self.min_box_area)
        objects = []
        for ann in self.by_image.get(entry["id"], []):
            obj = self._object(ann, checker)
            if obj is not None:
                objects.append(obj)
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=self.annotations, extras={"image_id": entry["id"]})

    def _object(self, ann: dict[str, Any], checker: ObjectChecker):
        line = ann.get("id")
        if ann.get("iscrowd"):
            checker.report(Problem(str(self.annotations), line, "crowd_region",
                                   f"annotation {line} is a crowd region (iscrowd=1), not one object"))
            return None
        name = self.categories.get(ann.get("category_id"))
        if name is None:
            checker.report(Problem(str(self.annotations), line, "unknown_class",
                                   f"annotation {line}: category id {ann.get('category_id')} is not in categories"))
            return None
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            checker.report(Problem(str(self.annotations), line, "malformed_line",
                                   f"annotation {line}: bbox is not [x, y, width, height]"))
            return None
        hbox = np.array([x, y, x + w, y + h])
        polygon = self._polygon(ann) if self.use_segmentation else None
        corners = box_corners(hbox)
        class_id = checker.check(name, corners, line, hbox)
        if class_id is None:
            return None
        if polygon is None:
            return checker.place(name, class_id, corners, line, hbox, extras={"annotation_id": line})
        return checker.place_polygon(name, class_id, polygon, line, hbox, extras={"annotation_id": line})

    @staticmethod
    def _polygon(ann: dict[str, Any]) -> np.ndarray | None:
        """The largest polygon ring of a polygon segmentation; None for RLE or none."""
        seg = ann.get("segmentation")
        if not isinstance(seg, list):
            return None
        rings = [np.asarray(r, dtype=np.float64).reshape(-1, 2) for r in seg
                 if isinstance(r, list) and len(r) >= 6 and len(r) % 2 == 0]
        return max(rings, key=polygon_area) if rings else None
