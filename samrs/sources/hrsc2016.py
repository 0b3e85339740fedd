"""HRSC2016 ships: `FullDataSet/AllImages/*.bmp` with `FullDataSet/Annotations/*.xml`, split files
`ImageSets/{train,val,trainval,test}.txt`, and colour segmentations `FullDataSet/Segmentations/*.png`.

Each <HRSC_Object> gives a horizontal box (`box_xmin`, `box_ymin`, `box_xmax`, `box_ymax`) and a
rotated one (`mbox_cx`, `mbox_cy`, `mbox_w`, `mbox_h` in pixels, `mbox_ang` in radians; w along the
ship). Test images carry a pixel mask per ship: the segmentation PNG paints each ship with the
colour its object's `seg_color` names ("R,G,B"); objects with an empty `seg_color` have no mask.
Every object is class "ship" (the XML's Class_ID, HRSC's ship-type hierarchy, is kept in extras).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samrs.classes import SubsetClasses
from samrs.geometry import rotated_rect
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import (
    ObjectChecker, Split, list_files, official_splits, open_xml, pair_files, read_split_files, require_dir,
    split_names,
)
from samrs.sources.isaid import color_code, rgb_codes
from samrs.sources.records import ImageRecord, MaskCrop, ObjectRecord
from samrs.sources.xmlfile import XmlDoc, XmlError
from samrs.utils.io import read_rgb

HBOX = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")
MBOX = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")
CLASS_NAME = "ship"
# HRSC2016's split files, test first: an item's official split is the first listing it
OFFICIAL_SPLITS = ("test", "train", "val", "trainval")


class Hrsc2016Source(Source):
    name = "hrsc2016"

    def __init__(
        self,
        root: str | Path,
        classes: SubsetClasses,
        split: Split = "test",
        split_file: str = "ImageSets/{split}.txt",
        data_dir: str = "FullDataSet",
        images_dir: str = "AllImages",
        annotations_dir: str = "Annotations",
        segmentation_dir: str = "Segmentations",
        image_suffix: str = ".bmp",
        segmentation_suffix: str = ".png",
        min_box_area: float = 1.0,
        segmented_only: bool = False,
    ) -> None:
        super().__init__(root, classes)
        self.split, self.split_file = split, split_file
        data = self.root / data_dir
        self.images_dir, self.annotations_dir = data / images_dir, data / annotations_dir
        self.segmentation_dir = data / segmentation_dir
        self.image_suffix, self.segmentation_suffix = image_suffix, segmentation_suffix
        self.min_box_area = min_box_area
        self.segmented_only = segmented_only

    def items(self, report: Report) -> list[SourceItem]:
        images = list_files(require_dir(self.images_dir, "HRSC2016 images"), [self.image_suffix])
        annotations = list_files(require_dir(self.annotations_dir, "HRSC2016 annotation"), [".xml"])
        listed = read_split_files([self.root / self.split_file.format(split=s) for s in split_names(self.split)],
                                  "HRSC2016") if self.split else None
        official = official_splits({s: self.root / self.split_file.format(split=s) for s in OFFICIAL_SPLITS})
        items = pair_files(images, annotations, self.images_dir, self.annotations_dir, report, listed, official)
        if self.segmented_only:  # the images label quality can be measured on
            items = [item for item in items if self._segmentation_path(item.name).is_file()]
        return items

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        opened = open_xml(item, "Img_SizeWidth", "Img_SizeHeight", report)
        if opened is None:
            return None
        doc, size = opened
        checker = ObjectChecker(self.classes, size[0], size[1], item.annotation_path, report, self.min_box_area,
                                rules=self.border_rules)
        objects = [obj for element in doc.root.iter("HRSC_Object")
                   if (obj := self._object(doc, element, checker)) is not None]
        segmentation = self._segmentation_path(item.name)
        extras = {"segmentation": str(segmentation)} if segmentation.is_file() else {}
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=item.annotation_path, extras=extras)

    def instance_masks(self, record: ImageRecord) -> list[np.ndarray | None]:
        """Per object of `record`, its (H, W) bool mask from the segmentation PNG: the pixels of its
        seg_color (all False when the PNG lacks that colour); None when the object has no seg_color
        or the image no segmentation (HRSC2016 segments only its test images)."""
        return [None if crop is None else crop.full(record.height, record.width)
                for crop in self.instance_crops(record)]

    def instance_crops(self, record: ImageRecord) -> list[MaskCrop | None]:
        """`instance_masks` cropped to each ship's pixels (a (0, 0) crop when the PNG lacks its colour)."""
        if "segmentation" not in record.extras:
            return [None] * len(record.objects)
        codes = rgb_codes(read_rgb(record.extras["segmentation"]))
        return [None if obj.extras.get("seg_color") is None else _crop(codes == color_code(obj.extras["seg_color"]))
                for obj in record.objects]

    def _segmentation_path(self, name: str) -> Path:
        return self.segmentation_dir / f"{name}{self.segmentation_suffix}"

    @staticmethod
    def _object(doc: XmlDoc, element, checker: ObjectChecker) -> ObjectRecord | None:
        line = doc.line(element)
        try:
            hbox = np.array([doc.number(element, k) for k in HBOX])
            cx, cy, w, h, angle = (doc.number(element, k) for k in MBOX)
            difficult, truncated = int(doc.text(element, "difficult", "0")), doc.text(element, "truncated", "0") == "1"
        except (XmlError, ValueError) as err:
            checker.report(Problem(str(doc.path), getattr(err, "line", None) or line, "malformed_xml", str(err)))
            return None
        extras = {"object_id": doc.text(element, "Object_ID", ""), "class_id": doc.text(element, "Class_ID", ""),
                  "seg_color": _seg_color(doc, element, checker)}
        header = [doc.text(element, k, "") for k in ("header_x", "header_y")]
        if all(header):
            extras["header"] = (float(header[0]), float(header[1]))
        return checker.make(CLASS_NAME, rotated_rect(cx, cy, w, h, angle), line, hbox,
                            difficult=difficult, truncated=truncated, extras=extras)


def _seg_color(doc: XmlDoc, element, checker: ObjectChecker) -> tuple[int, int, int] | None:
    """The object's segmentation colour, or None when it has none (a bad one is reported)."""
    text = doc.text(element, "seg_color", "")
    if not text:
        return None
    try:
        color = tuple(int(v) for v in text.split(","))
    except ValueError:
        color = ()
    if len(color) != 3 or not all(0 <= v <= 255 for v in color):
        checker.report(Problem(str(doc.path), doc.line(element.find("seg_color")), "malformed_xml",
                               f"seg_color {text!r} is not 'R,G,B'", "kept the object without a mask"))
        return None
    return color


def _crop(mask: np.ndarray) -> MaskCrop:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return MaskCrop(np.zeros((0, 0), dtype=bool), 0, 0)
    return MaskCrop(mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], int(cols[0]), int(rows[0]))
