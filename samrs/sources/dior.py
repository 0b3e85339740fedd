"""DIOR (horizontal VOC XML) and DIOR-R (oriented XML), read together, as the release lays them out:

    <root>/JPEGImages-trainval/00001.jpg ... JPEGImages-test/11726.jpg ...
    <root>/Annotations/Horizontal Bounding Boxes/00001.xml   VOC <bndbox> xmin ymin xmax ymax (CRLF)
    <root>/Annotations/Oriented Bounding Boxes/00001.xml     <robndbox> x_left_top ... y_left_bottom
                                                             (4 corners, px) and <angle> (degrees)
    <root>/ImageSets/Main/{train,val,test}.txt               image ids, one per line

The two files of an image list the same objects in different orders and with slightly different
boxes, so objects are paired per class by an optimal assignment (Hungarian method) on the IoU of
the horizontal box with the oriented box's min/max extent; pairs below `min_pair_iou` stay
unpaired. A paired object keeps the file's horizontal box in `hbox` and the oriented corners in
`corners`; an unpaired one is kept with what its own file gives and reported as `unpaired_box`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from samrs.classes import SubsetClasses, normalize_name
from samrs.errors import ConfigError
from samrs.geometry import hbox_of
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import (
    ObjectChecker, Split, checked_size, list_files, official_splits, read_split_files, require_dir, split_names,
    unique_items,
)
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.sources.xmlfile import XmlDoc, XmlError, parse_xml

ROBNDBOX = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
            "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")
BOX_KINDS = ("both", "horizontal", "oriented")
# DIOR's split files; an item's official split is the one listing it, whichever splits are labeled
OFFICIAL_SPLITS = ("test", "train", "val")


@dataclass
class ParsedBox:
    """One object as one of the two files gives it."""

    name: str
    line: int | None
    class_id: int
    corners: np.ndarray  # (4, 2): the oriented corners, or the horizontal box's corners
    hbox: np.ndarray | None  # the file's horizontal box (horizontal file only)
    extras: dict = field(default_factory=dict)


class DiorSource(Source):
    name = "dior"

    def __init__(
        self,
        root: str | Path,
        classes: SubsetClasses,
        split: Split = ("train", "val", "test"),
        boxes: str = "both",
        image_dirs: Sequence[str] = ("JPEGImages-trainval", "JPEGImages-test"),
        horizontal_dir: str = "Annotations/Horizontal Bounding Boxes",
        oriented_dir: str = "Annotations/Oriented Bounding Boxes",
        split_dir: str = "ImageSets/Main",
        image_suffix: str = ".jpg",
        min_pair_iou: float = 0.3,
        min_box_area: float = 1.0,
    ) -> None:
        super().__init__(root, classes)
        if boxes not in BOX_KINDS:
            raise ConfigError(f"boxes={boxes!r}; choose one of {', '.join(BOX_KINDS)}")
        self.split, self.boxes = split, boxes
        self.image_dirs = [self.root / d for d in image_dirs]
        self.annotation_dirs = {kind: self.root / d for kind, d in
                                (("horizontal", horizontal_dir), ("oriented", oriented_dir))
                                if boxes in (kind, "both")}
        self.split_dir, self.image_suffix = self.root / split_dir, image_suffix
        self.min_pair_iou, self.min_box_area = min_pair_iou, min_box_area

    def items(self, report: Report) -> list[SourceItem]:
        annotations = {kind: list_files(require_dir(d, f"DIOR {kind} annotation"), [".xml"])
                       for kind, d in self.annotation_dirs.items()}
        images: dict[str, Path] = {}
        for folder in self.image_dirs:
            images = list_files(require_dir(folder, "DIOR image"), [self.image_suffix]) | images
        listed = self._listed()
        names = sorted(listed) if listed is not None else sorted(set().union(images, *annotations.values()))
        official = official_splits({s: self.split_dir / f"{s}.txt" for s in OFFICIAL_SPLITS})
        items = []
        for name in names:
            found = {kind: files[name] for kind, files in annotations.items() if name in files}
            image = images.get(name)
            if image is None:
                where = next(iter(found.values()), None)
                path, line = (where, None) if where else listed[name]
                report(Problem(str(path), line, "missing_image",
                               f"no image {name}{self.image_suffix} in {', '.join(map(str, self.image_dirs))}"))
            elif not found:
                report(Problem(str(image), None, "missing_annotation", f"no annotation {name}.xml in "
                               + " nor ".join(str(d) for d in self.annotation_dirs.values())))
            else:
                for kind in annotations.keys() - found.keys():
                    report(Problem(str(next(iter(found.values()))), None, "missing_annotation",
                                   f"no {kind} annotation {name}.xml in {self.annotation_dirs[kind]}",
                                   f"kept the {next(iter(found))} boxes alone"))
                items.append(SourceItem(name, image, found.get("horizontal", found.get("oriented")), official.get(name)))
        return unique_items(items)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        docs = {}
        for kind, folder in self.annotation_dirs.items():
            path = folder / f"{item.name}.xml"
            if path.is_file():
                try:
                    docs[kind] = parse_xml(path)
                except XmlError as err:
                    report(Problem(str(path), err.line, "malformed_xml", str(err)))
        if not docs:
            return None
        first = next(iter(docs.values()))
        size = checked_size(item.image_path, first.size("size/width", "size/height"), first.path,
                            first.line(first.root.find("size")), report)
        if size is None:
            return None
        checkers = {kind: ObjectChecker(self.classes, size[0], size[1], doc.path, report, self.min_box_area,
                                        rules=self.border_rules)
                    for kind, doc in docs.items()}
        parsed = {kind: list(self._parse(doc, kind, checkers[kind], report)) for kind, doc in docs.items()}
        if len(parsed) == 2:
            objects = self._paired(parsed["horizontal"], parsed["oriented"], checkers)
        else:
            kind, boxes = next(iter(parsed.items()))
            objects = [self._place(checkers[kind], box) for box in boxes]
        return ImageRecord(item.name, item.image_path, size[0], size[1], [o for o in objects if o is not None],
                           source=self.name, annotation_path=item.annotation_path,
                           extras={"oriented_annotation": str(docs["oriented"].path)} if "oriented" in docs else {})

    def _listed(self) -> dict[str, tuple[Path, int]] | None:
        """name -> (split file, line) of the selected splits; None when every image is wanted."""
        if not self.split:
            return None
        return read_split_files([self.split_dir / f"{s}.txt" for s in split_names(self.split)], "DIOR")

    def _parse(self, doc: XmlDoc, kind: str, checker: ObjectChecker, report: Report):
        """The usable boxes of one file; malformed objects, unknown classes and degenerate boxes are
        reported and left out."""
        for element in doc.root.iter("object"):
            line = doc.line(element)
            try:
                name = doc.text(element, "name")
                if kind == "horizontal":
                    hbox = np.array([doc.number(element, f"bndbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")])
                    corners = hbox[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(4, 2)
                    extras = {"pose": doc.text(element, "pose", "")}
                else:
                    hbox = None
                    corners = np.array([doc.number(element, f"robndbox/{k}") for k in ROBNDBOX]).reshape(4, 2)
                    extras = {"pose": doc.text(element, "pose", ""), "angle": float(doc.text(element, "angle", "nan")),
                              "difficult": int(doc.text(element, "difficult", "0")),
                              "truncated": int(doc.text(element, "truncated", "0"))}
            except (XmlError, ValueError) as err:
                report(Problem(str(doc.path), getattr(err, "line", line) or line, "malformed_xml", str(err)))
                continue
            class_id = checker.check(name, corners, line, hbox)
            if class_id is not None:
                yield ParsedBox(name, line, class_id, corners, hbox, extras)

    def _paired(self, horizontal: list[ParsedBox], oriented: list[ParsedBox],
                checkers: dict[str, ObjectChecker]) -> list[ObjectRecord | None]:
        """Objects of both files, each horizontal box with its oriented partner where one is found."""
        objects = []
        for class_id in sorted({b.class_id for b in horizontal + oriented}):
            hs = [b for b in horizontal if b.class_id == class_id]
            rs = [b for b in oriented if b.class_id == class_id]
            pairs = match_boxes([b.hbox for b in hs], [hbox_of(b.corners) for b in rs], self.min_pair_iou)
            for i, j in pairs:
                h, r = hs[i], rs[j]
                paired = replace(r, hbox=h.hbox, extras={**r.extras, "horizontal_line": h.line})
                objects.append(self._place(checkers["oriented"], paired))
            for kind, boxes, used in (("horizontal", hs, {i for i, _ in pairs}), ("oriented", rs, {j for _, j in pairs})):
                for k, box in enumerate(boxes):
                    if k not in used:
                        other = "oriented" if kind == "horizontal" else "horizontal"
                        checkers[kind].report(Problem(str(checkers[kind].path), box.line, "unpaired_box",
                                                      f"{box.name} box has no {other} partner",
                                                      f"kept the {kind} box alone"))
                        objects.append(self._place(checkers[kind], box))
        return objects

    @staticmethod
    def _place(checker: ObjectChecker, box: ParsedBox) -> ObjectRecord | None:
        return checker.place(box.name, box.class_id, box.corners, box.line, box.hbox,
                             box.extras.get("difficult", 0), bool(box.extras.get("truncated", 0)), box.extras)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of horizontal boxes x_min, y_min, x_max, y_max."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def match_boxes(a: list, b: list, min_iou: float) -> list[tuple[int, int]]:
    """Index pairs (i, j) of the assignment maximising total IoU, keeping pairs with IoU >= min_iou."""
    if not a or not b:
        return []
    iou = box_iou(np.array(a), np.array(b))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if iou[i, j] >= min_iou]


def dior_name(name: str) -> str:
    """How DIOR's files spell a SIOR class name (two classes are capitalised there)."""
    return {"expresswayservicearea": "Expressway-Service-area",
            "expresswaytollstation": "Expressway-toll-station"}.get(normalize_name(name), name)
