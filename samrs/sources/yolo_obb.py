"""The Ultralytics OBB format: `<root>/images/<split>/*.jpg` with `<root>/labels/<split>/*.txt`.

Each label line is `class x1 y1 x2 y2 x3 y3 x4 y4`: a class index into the dataset's `names` and
the four corners of the rotated box, normalised by the image's width and height (0..1). The names
come from `names` or from the dataset YAML (`data_yaml`, Ultralytics' `names:` as a list or as
{index: name}). An image without a label file is a background image (no objects), as Ultralytics
reads it; a label file without its image is `missing_image`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from samrs.errors import BadFileError, MissingPathError
from samrs.classes import SubsetClasses
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import ObjectChecker, checked_size, list_files, require_dir, split_names, unique_items
from samrs.sources.dota import read_text_lines
from samrs.sources.records import ImageRecord
from samrs.utils.io import IMAGE_SUFFIXES


def read_names(path: Path) -> list[str]:
    """The class names of an Ultralytics dataset YAML, in index order."""
    if not path.is_file():
        raise MissingPathError(f"{path}: dataset YAML not found (source.data_yaml), or give source.names")
    names = (yaml.safe_load(path.read_text()) or {}).get("names")
    if isinstance(names, dict):
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise BadFileError(f"{path}: names must be numbered 0..{len(keys) - 1}, got {keys}")
        return [str(names[k] if k in names else names[str(k)]) for k in keys]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise BadFileError(f"{path}: no `names` list or mapping")


class YoloObbSource(Source):
    name = "yolo_obb"

    def __init__(self, root: str | Path, split: str | Sequence[str] | None = "train", names: Sequence[str] | None = None,
                 data_yaml: str = "data.yaml", images_dir: str = "images", labels_dir: str = "labels",
                 image_suffixes: Sequence[str] = IMAGE_SUFFIXES, subset: str = "yolo_obb",
                 min_box_area: float = 1.0) -> None:
        names = list(names) if names is not None else read_names(Path(root) / data_yaml)
        super().__init__(root, SubsetClasses(subset, tuple(names)))
        self.split, self.images_dir, self.labels_dir = split, images_dir, labels_dir
        self.image_suffixes, self.min_box_area = tuple(image_suffixes), min_box_area

    def items(self, report: Report) -> list[SourceItem]:
        items = []
        for split in split_names(self.split) or [""]:
            images = require_dir(self.root / self.images_dir / split, "YOLO images")
            labels_dir = self.root / self.labels_dir / split
            labels = list_files(labels_dir, [".txt"]) if labels_dir.is_dir() else {}
            found = list_files(images, self.image_suffixes)
            for name, path in labels.items():
                if name not in found:
                    report(Problem(str(path), None, "missing_image", f"no image {name}.* in {images}"))
            items += [SourceItem(name, path, labels.get(name)) for name, path in found.items()]
        return unique_items(items)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        size = checked_size(item.image_path, None, item.annotation_path or item.image_path, None, report)
        if size is None:
            return None
        objects = []
        if item.annotation_path is not None:
            lines = read_text_lines(item.annotation_path, report)
            if lines is None:
                return None
            checker = ObjectChecker(self.classes, size[0], size[1], item.annotation_path, report, self.min_box_area)
            for number, text in enumerate(lines, 1):
                obj = self._object(text.split(), number, checker, size)
                if obj is not None:
                    objects.append(obj)
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=item.annotation_path)

    def _object(self, fields: list[str], line: int, checker: ObjectChecker, size: tuple[int, int]):
        if not fields:
            return None
        path = str(checker.path)
        if len(fields) != 9:
            checker.report(Problem(path, line, "malformed_line",
                                   f"expected 9 fields 'class x1 y1 x2 y2 x3 y3 x4 y4', got {len(fields)}"))
            return None
        try:
            index = int(fields[0])
            corners = np.array([float(v) for v in fields[1:]]).reshape(4, 2) * size
        except ValueError:
            checker.report(Problem(path, line, "malformed_line", "a class index or coordinate is not a number"))
            return None
        if not 0 <= index < self.classes.num_classes:
            checker.report(Problem(path, line, "unknown_class",
                                   f"class index {index} is not one of the {self.classes.num_classes} names"))
            return None
        return checker.make(self.classes.names[index], corners, line)
