"""DOTA v1.0 / v1.5 / v2.0: `<root>/<split>/images/*.png` with `labelTxt/*.txt`.

A labelTxt file may start with two header lines, `imagesource:GoogleEarth` and `gsd:0.1157`
(kept in the record's extras), then one object per line: `x1 y1 x2 y2 x3 y3 x4 y4 class difficulty`,
the four corners of the oriented box in pixels. The devkit's split crops write difficulty 2 for
objects the crop truncated. Class names are checked against the chosen DOTA version's list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from samrs.classes import DOTA_CLASSES, SubsetClasses
from samrs.errors import ConfigError
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import ObjectChecker, Split, checked_size, split_items
from samrs.sources.records import ImageRecord, ObjectRecord

HEADER_KEYS = ("imagesource", "gsd")


class DotaSource(Source):
    name = "dota"

    def __init__(
        self,
        root: str | Path,
        classes: SubsetClasses,
        split: Split = "train",
        version: str = "2.0",
        images_dir: str = "images",
        labels_dir: str = "labelTxt",
        image_suffixes: Sequence[str] = (".png",),
        label_suffix: str = ".txt",
        truncated_difficulty: int | None = 2,
        min_box_area: float = 1.0,
    ) -> None:
        super().__init__(root, classes)
        if str(version) not in DOTA_CLASSES:
            raise ConfigError(f"unknown DOTA version {version!r}; known: {', '.join(DOTA_CLASSES)}")
        self.version = str(version)
        self.split = split
        self.images_dir, self.labels_dir = images_dir, labels_dir
        self.image_suffixes, self.label_suffix = tuple(image_suffixes), label_suffix
        self.truncated_difficulty = truncated_difficulty
        self.min_box_area = min_box_area

    def items(self, report: Report) -> list[SourceItem]:
        return split_items(self.root, self.split, self.images_dir, self.labels_dir, self.image_suffixes,
                           [self.label_suffix], "DOTA", report)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        size = checked_size(item.image_path, None, item.annotation_path, None, report)
        if size is None:
            return None
        lines = read_text_lines(item.annotation_path, report)
        if lines is None:
            return None
        checker = ObjectChecker(self.classes, size[0], size[1], item.annotation_path, report, self.min_box_area,
                                DOTA_CLASSES[self.version], f"DOTA v{self.version}",
                                rules=self.border_rules)
        header, objects = parse_label_lines(lines, checker, self.truncated_difficulty)
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=item.annotation_path, extras=header)


def read_text_lines(path: Path, report: Report) -> list[str] | None:
    """The file's lines (any line ending, BOM dropped); None (reported) when it is not UTF-8 text."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        report(Problem(str(path), line, "malformed_line", f"not UTF-8 text ({err.reason})", "skipped the file"))
        return None


def parse_label_lines(
    lines: list[str], checker: ObjectChecker, truncated_difficulty: int | None
) -> tuple[dict, list[ObjectRecord]]:
    """(header fields, objects) of a labelTxt file's lines; bad lines are reported and skipped."""
    header: dict = {}
    objects = []
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        key, sep, value = text.partition(":")
        if sep and key.strip().lower() in HEADER_KEYS and not objects:
            header[key.strip().lower()] = _header_value(value.strip())
            continue
        parsed = _parse_object(text)
        if isinstance(parsed, str):
            checker.report(Problem(str(checker.path), number, "malformed_line", f"{parsed}: {text!r}"))
            continue
        corners, name, difficulty = parsed
        truncated = truncated_difficulty is not None and difficulty == truncated_difficulty
        obj = checker.make(name, corners, number, difficult=difficulty, truncated=truncated)
        if obj is not None:
            objects.append(obj)
    return header, objects


def _parse_object(text: str) -> tuple[np.ndarray, str, int] | str:
    """(corners, class, difficulty), or the reason the line does not parse. Nine fields (no
    difficulty, as in some DOTA test releases) read as difficulty 0, like the official devkit."""
    fields = text.split()
    if len(fields) not in (9, 10):
        return f"expected 10 fields 'x1 y1 ... x4 y4 class difficulty', got {len(fields)}"
    try:
        corners = np.array([float(v) for v in fields[:8]]).reshape(4, 2)
    except ValueError:
        return "a corner coordinate is not a number"
    try:
        difficulty = int(fields[9]) if len(fields) == 10 else 0
    except ValueError:
        return f"difficulty {fields[9]!r} is not an integer"
    return corners, fields[8], difficulty


def _header_value(value: str) -> float | str | None:
    if value.lower() in ("", "null", "none"):
        return None
    try:
        return float(value)
    except ValueError:
        return value
