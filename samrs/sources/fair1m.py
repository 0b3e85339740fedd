"""FAIR1M 1.0 / 2.0: `<root>/<split>/images/*.tif` with `labelXml/*.xml`.

Each <object> has `possibleresult/name` (names with spaces: "Liquid Cargo Ship" is FAST's
Liquid-Cargo-Ship) and `points`: the four corners of the rotated box as "x,y" pixel pairs, usually
with a fifth point that closes the ring by repeating the first. Image size is in `size`. Corners
can lie outside the image (the release has them): such boxes are clipped and reported.
The 1.0 release nests its training set in parts: split [train/part1, train/part2].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from samrs.classes import SubsetClasses
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import ObjectChecker, Split, open_xml, split_items
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.sources.xmlfile import XmlDoc, XmlError


class Fair1mSource(Source):
    name = "fair1m"

    def __init__(
        self,
        root: str | Path,
        classes: SubsetClasses,
        split: Split = "train",
        images_dir: str = "images",
        labels_dir: str = "labelXml",
        image_suffix: str = ".tif",
        min_box_area: float = 1.0,
    ) -> None:
        super().__init__(root, classes)
        self.split, self.images_dir, self.labels_dir = split, images_dir, labels_dir
        self.image_suffix, self.min_box_area = image_suffix, min_box_area

    def items(self, report: Report) -> list[SourceItem]:
        return split_items(self.root, self.split, self.images_dir, self.labels_dir, [self.image_suffix], [".xml"],
                           "FAIR1M", report)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        opened = open_xml(item, "size/width", "size/height", report)
        if opened is None:
            return None
        doc, size = opened
        checker = ObjectChecker(self.classes, size[0], size[1], item.annotation_path, report, self.min_box_area,
                                rules=self.border_rules)
        objects = [obj for element in doc.root.iter("object")
                   if (obj := self._object(doc, element, checker)) is not None]
        extras = {key: doc.text(doc.root, path, "") for key, path in
                  (("filename", "source/filename"), ("origin", "source/origin"), ("version", "research/version"))}
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=item.annotation_path, extras=extras)

    @staticmethod
    def _object(doc: XmlDoc, element, checker: ObjectChecker) -> ObjectRecord | None:
        line = doc.line(element)
        try:
            name = doc.text(element, "possibleresult/name")
            corners = parse_points(doc, element)
        except XmlError as err:
            checker.report(Problem(str(doc.path), err.line or line, "malformed_xml", str(err)))
            return None
        extras = {"coordinate": doc.text(element, "coordinate", ""), "type": doc.text(element, "type", "")}
        return checker.make(name, corners, line, extras=extras)


def parse_points(doc: XmlDoc, element) -> np.ndarray:
    """(4, 2) corners of an object's <points>: four "x,y" points, or five closing the ring."""
    points = element.findall("points/point")
    line = doc.line(element.find("points")) or doc.line(element)
    try:
        xy = np.array([[float(v) for v in (p.text or "").split(",")] for p in points], dtype=np.float64)
    except ValueError:
        raise XmlError("a <point> is not 'x,y'", line) from None
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise XmlError("a <point> is not 'x,y'", line)
    if len(xy) == 5 and np.array_equal(xy[0], xy[4]):
        xy = xy[:4]
    if len(xy) != 4:
        raise XmlError(f"expected 4 corners (or 5 with the first repeated), got {len(points)} points", line)
    return xy


def fair1m_name(name: str) -> str:
    """How FAIR1M's files spell a FAST class name: spaces for the dashes ("Liquid Cargo Ship"),
    except the other-* classes, which keep theirs."""
    return name if name.startswith("other-") else name.replace("-", " ")
