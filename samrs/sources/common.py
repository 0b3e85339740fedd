"""What every reader shares: finding and pairing files, image sizes, and checking one box.

`ObjectChecker.make` is the single place where a parsed box becomes an ObjectRecord: the class name
is looked up, degenerate and implausibly large boxes are refused, boxes reaching outside the image
are clipped (and marked truncated) or dropped by the tiling's `min_visible` rule, and the horizontal
box is min/max over all four corners unless the source gives its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import shapely

from samrs.classes import SubsetClasses, normalize_name
from samrs.errors import ConfigError, MissingPathError
from samrs.geometry import clip_polygon, hbox_of, min_area_rect, polygon_area
from samrs.sources.base import BorderRules, Problem, Report, SourceItem
from samrs.sources.records import ObjectRecord
from samrs.sources.tiling import largest_polygon
from samrs.sources.xmlfile import XmlDoc, XmlError, parse_xml
from samrs.utils.io import image_size

Split = str | Sequence[str] | None
_WHOLE = 1.0 - 1e-9  # visible fractions above this count as the whole object


def split_names(split: Split) -> list[str]:
    """The selected split(s) as a list: one name, several, or none."""
    return [] if not split else [split] if isinstance(split, str) else list(split)


def split_dirs(root: Path, split: Split) -> list[tuple[str | None, Path]]:
    """(split, folder) of the selected split(s): root/split for each; (None, root) when split is empty."""
    return [(s, root / s) for s in split_names(split)] or [(None, root)]


def require_dir(path: Path, what: str) -> Path:
    """A configured folder must exist: a wrong path is a configuration error, not bad data."""
    if not path.is_dir():
        raise MissingPathError(f"{path}: {what} folder not found (check the source's root, split and folder names)")
    return path


def list_files(folder: Path, suffixes: Iterable[str]) -> dict[str, Path]:
    """name -> path of the files in `folder` ending with one of `suffixes` (case-insensitive);
    the name is the file name without the suffix. Hidden files (partial writes) are ignored."""
    ends = tuple(s.lower() for s in suffixes)
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        low = path.name.lower()
        if path.name.startswith(".") or not path.is_file():
            continue
        for end in ends:
            if low.endswith(end):
                out.setdefault(path.name[: len(path.name) - len(end)], path)
                break
    return out


def official_splits(files: Mapping[str, Path]) -> dict[str, str]:
    """Image name -> the split whose file lists it, over the split files that exist ({split: file},
    earlier splits win where files overlap, e.g. test before trainval)."""
    out: dict[str, str] = {}
    for split, path in files.items():
        if path.is_file():
            for name in read_split_files([path], "").keys():
                out.setdefault(name, split)
    return out


def read_split_files(paths: Iterable[Path], dataset: str) -> dict[str, tuple[Path, int]]:
    """Image names listed in split files (one per line, blank lines ignored) -> (file, line)."""
    listed: dict[str, tuple[Path, int]] = {}
    for path in paths:
        if not path.is_file():
            raise MissingPathError(f"{path}: {dataset} split file not found (check the source's split)")
        for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                listed.setdefault(line.strip(), (path, number))
    return listed


def pair_files(
    images: dict[str, Path],
    annotations: dict[str, Path],
    images_dir: Path,
    annotations_dir: Path,
    report: Report,
    listed: dict[str, tuple[Path, int]] | None = None,
    split: str | Mapping[str, str] | None = None,
) -> list[SourceItem]:
    """Items for the names having both an image and an annotation, sorted; every unpaired name is
    reported. With `listed` (names of split files), only those names are considered. `split`: the
    official split of every item (its split folder), or of each name ({name: split})."""
    names = sorted(listed) if listed is not None else sorted(images.keys() | annotations.keys())
    items = []
    for name in names:
        image, annotation = images.get(name), annotations.get(name)
        if image is not None and annotation is not None:
            items.append(SourceItem(name, image, annotation, split.get(name) if isinstance(split, Mapping) else split))
        elif annotation is not None:
            report(Problem(str(annotation), None, "missing_image", f"no image {name}.* in {images_dir}"))
        elif image is not None:
            report(Problem(str(image), None, "missing_annotation", f"no annotation for {name} in {annotations_dir}"))
        else:
            path, line = listed[name]
            report(Problem(str(path), line, "missing_image",
                           f"{name} is listed but has neither image in {images_dir} nor annotation in {annotations_dir}"))
    return items


def split_items(
    root: Path, split: Split, images_dir: str, annotations_dir: str, image_suffixes: Iterable[str],
    annotation_suffixes: Iterable[str], dataset: str, report: Report,
) -> list[SourceItem]:
    """The paired items of <root>/<split>/<images_dir> and <root>/<split>/<annotations_dir>, over
    every selected split (the DOTA and FAIR1M layouts)."""
    items = []
    for name, folder in split_dirs(root, split):
        images = require_dir(folder / images_dir, f"{dataset} images")
        annotations = require_dir(folder / annotations_dir, f"{dataset} {annotations_dir}")
        items += pair_files(list_files(images, image_suffixes), list_files(annotations, annotation_suffixes),
                            images, annotations, report, split=name)
    return unique_items(items)


def unique_items(items: list[SourceItem]) -> list[SourceItem]:
    """Items sorted by name; two splits holding the same image name would overwrite each other's
    output, so that is refused."""
    items = sorted(items, key=lambda item: item.name)
    for a, b in zip(items, items[1:]):
        if a.name == b.name:
            raise ConfigError(f"image name {a.name} occurs twice: {a.image_path} and {b.image_path} (select one "
                              "split per run, or label them into separate output_dirs)")
    return items


def open_xml(item: SourceItem, width_path: str, height_path: str, report: Report) -> tuple[XmlDoc, tuple[int, int]] | None:
    """The item's parsed XML annotation and checked image size (see checked_size); None (reported)
    when the XML does not parse or the image header cannot be read."""
    try:
        doc = parse_xml(item.annotation_path)
    except XmlError as err:
        report(Problem(str(item.annotation_path), err.line, "malformed_xml", str(err)))
        return None
    size = checked_size(item.image_path, doc.size(width_path, height_path), item.annotation_path,
                        doc.line(doc.root.find(width_path)), report)
    return None if size is None else (doc, size)


def checked_size(
    image: Path, given: tuple[int, int] | None, annotation: Path, line: int | None, report: Report
) -> tuple[int, int] | None:
    """The image's (width, height) from its header; the annotation's size `given` when it agrees.

    None (reported, image skipped) when the header cannot be read. A disagreement is reported and
    the file's own size wins: the pixels are what gets labeled.
    """
    try:
        actual = image_size(image)
    except OSError as err:
        report(Problem(str(image), None, "unreadable_image", str(err)))
        return None
    if given is not None and tuple(given) != actual:
        report(Problem(str(annotation), line, "size_mismatch",
                       f"annotation gives {given[0]}x{given[1]}, image {image.name} is {actual[0]}x{actual[1]}",
                       "kept the image's size"))
    return actual


@dataclass
class ObjectChecker:
    """Turns the boxes of one annotation file into ObjectRecords, reporting every refused box."""

    classes: SubsetClasses
    width: int
    height: int
    path: Path
    report: Report
    min_area: float = 1.0  # px^2: a box smaller than this covers no pixel centre reliably
    source_names: tuple[str, ...] | None = None  # the source's own class list (e.g. one DOTA version)
    source_label: str = ""
    rules: BorderRules = BorderRules()
    _known: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self._known = frozenset(normalize_name(n) for n in self.source_names or ())

    def make(self, name: str, corners: np.ndarray, line: int | None, hbox: np.ndarray | None = None,
             **fields: Any) -> ObjectRecord | None:
        """The object, or None (reported) for an unknown class, a degenerate box or a box wholly
        outside the image; see `check` and `place` (which takes `fields`)."""
        class_id = self.check(name, corners, line, hbox)
        if class_id is None:
            return None
        return self.place(name, class_id, corners, line, hbox, **fields)

    def check(self, name: str, corners: np.ndarray, line: int | None, hbox: np.ndarray | None = None) -> int | None:
        """The subset id of a usable box; None (reported) for an unknown class or a degenerate box."""
        class_id = self._class_id(name, line)
        corners = np.asarray(corners, dtype=np.float64).reshape(4, 2)
        box = hbox_of(corners) if hbox is None else np.asarray(hbox, dtype=np.float64)
        if class_id is None or not self._usable(corners, box, line):
            return None
        return class_id

    def place(
        self,
        name: str,
        class_id: int,
        corners: np.ndarray,
        line: int | None,
        hbox: np.ndarray | None = None,
        difficult: int = 0,
        truncated: bool = False,
        extras: dict[str, Any] | None = None,
    ) -> ObjectRecord | None:
        """A checked box as an object in the image. A box partly outside is clipped: `polygon` is
        the visible part, `hbox` is clipped to the image and the object is truncated; `corners` stay
        as the file gives them. A box less than `rules.min_visible` inside is dropped (reported)."""
        corners = np.asarray(corners, dtype=np.float64).reshape(4, 2)
        box = hbox_of(corners) if hbox is None else np.asarray(hbox, dtype=np.float64)
        polygon = None
        if not self._inside(corners, box):
            polygon = clip_polygon(corners, 0, 0, self.width, self.height)
            visible = 0.0 if polygon is None else polygon_area(polygon) / polygon_area(corners)
            image = f"the {self.width}x{self.height} image"
            if polygon is None or polygon_area(polygon) < self.min_area:
                self._problem(line, "out_of_image_box", f"{name} box {_fmt(box)} lies outside {image}", "dropped")
                return None
            if visible < self.rules.min_visible:
                self._problem(line, "out_of_image_box", f"{name} box {_fmt(box)}: {visible:.0%} of it lies inside "
                              f"{image} (min_visible {self.rules.min_visible:g})", "dropped")
                return None
            box = self._clip_box(box, polygon)
            if visible < _WHOLE:  # the rotated box is cut, not only a loose horizontal box
                truncated = True
                extras = {**(extras or {}), "visible_fraction": round(float(visible), 4)}
            self._problem(line, "out_of_image_box",
                          f"{name} box reaches outside {image} ({visible:.0%} of it inside)", "clipped")
        return ObjectRecord(name, class_id, corners, box, difficult, truncated, polygon, dict(extras or {}))

    def place_polygon(self, name: str, class_id: int, points: np.ndarray, line: int | None,
                      hbox: np.ndarray | None = None, extras: dict[str, Any] | None = None) -> ObjectRecord | None:
        """An object whose region is any simple polygon (a COCO segmentation, a GIS feature), cut at
        the image's edge like `place` (a concave polygon stays concave). Its rotated box is the
        polygon itself when it has 4 vertices, else their minimum-area rectangle; `hbox` defaults to
        the visible polygon's box."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        shape = shapely.Polygon(points)
        whole = shape if shape.is_valid else shape.convex_hull
        visible = largest_polygon(shapely.clip_by_rect(whole, 0, 0, self.width, self.height))
        if visible is None or visible.area < self.min_area:
            self._problem(line, "out_of_image_box",
                          f"{name} polygon {_fmt(hbox_of(points))} lies outside the {self.width}x{self.height} image",
                          "dropped")
            return None
        cut = visible.area < whole.area * (1 - 1e-9)
        if cut:
            self._problem(line, "out_of_image_box", f"{name} polygon reaches outside the {self.width}x{self.height} "
                                                    f"image", "clipped")
        region = np.asarray(visible.exterior.coords, dtype=np.float64)[:-1]
        corners = points if len(points) == 4 else min_area_rect(points)
        box = hbox_of(region) if hbox is None else self._clip_box(np.asarray(hbox, dtype=np.float64), region)
        polygon = None if len(points) == 4 and not cut else region
        return ObjectRecord(name, class_id, corners, box, polygon=polygon, extras=dict(extras or {}))

    def _class_id(self, name: str, line: int | None) -> int | None:
        if self._known and normalize_name(name) not in self._known:
            self._problem(line, "unknown_class", f"unknown class {name!r}: not a {self.source_label} class")
            return None
        class_id = self.classes.id_of(name)
        if class_id is None:
            self._problem(line, "unknown_class", f"unknown class {name!r}: not in subset {self.classes.name}")
        return class_id

    def _usable(self, corners: np.ndarray, box: np.ndarray, line: int | None) -> bool:
        if not (np.isfinite(corners).all() and np.isfinite(box).all()):
            self._problem(line, "degenerate_box", "box has a NaN or infinite coordinate")
            return False
        area = polygon_area(corners)
        if area < self.min_area or box[2] <= box[0] or box[3] <= box[1]:
            self._problem(line, "degenerate_box",
                          f"box {_fmt(corners.ravel())} has area {area:.2f} px^2 (< {self.min_area})")
            return False
        scale = self.rules.implausible_scale
        extent = np.maximum(box[2:] - box[:2], np.ptp(corners, axis=0))  # width, height
        if (extent > scale * np.array([self.width, self.height])).any():
            self._problem(line, "implausible_box", f"box {_fmt(corners.ravel())} is more than {scale:g} times the "
                          f"size of the {self.width}x{self.height} image: a broken coordinate?")
            return False
        return True

    def _inside(self, corners: np.ndarray, box: np.ndarray) -> bool:
        xs = np.concatenate([corners[:, 0], box[0::2]])
        ys = np.concatenate([corners[:, 1], box[1::2]])
        return bool(xs.min() >= 0 and ys.min() >= 0 and xs.max() <= self.width and ys.max() <= self.height)

    def _clip_box(self, box: np.ndarray, polygon: np.ndarray) -> np.ndarray:
        """The source's box clipped to the image; the visible polygon's box if nothing is left."""
        clipped = np.array([max(box[0], 0), max(box[1], 0), min(box[2], self.width), min(box[3], self.height)])
        return clipped if clipped[2] > clipped[0] and clipped[3] > clipped[1] else hbox_of(polygon)

    def _problem(self, line: int | None, kind: str, message: str, action: str = "skipped") -> None:
        self.report(Problem(str(self.path), line, kind, message, action))


def _fmt(values: np.ndarray) -> str:
    return "[" + " ".join(f"{v:g}" for v in np.asarray(values).ravel()) + "]"
