"""What every detection-format reader provides, and how it reports bad input.

A reader lists the images of a dataset (`items`) and parses one item into an ImageRecord (`read`).
Every problem it meets (a malformed line, an unknown class, a box outside the image, an image
without annotation, ...) goes to the `report` callback as a Problem naming the file and line, with
what was done about it; the label job collects them into report.json, or stops at the first one
with strict=true (the callback raises BadInputError).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from samrs.classes import SubsetClasses
from samrs.errors import MissingPathError, UserError
from samrs.sources.records import ImageRecord

# Kinds of problems, shared by readers and the label job (report.json groups by them).
PROBLEM_KINDS = (
    "malformed_line",  # a labelTxt line that does not parse
    "malformed_xml",  # an XML file that does not parse, or lacks a required field
    "unknown_class",  # a class name not in the subset's list
    "degenerate_box",  # zero area, NaN, repeated corners
    "out_of_image_box",  # a box wholly or partly outside the image (clipped or dropped)
    "implausible_box",  # a box many times larger than its image (a broken coordinate)
    "unpaired_box",  # DIOR: a box of one annotation file with no partner in the other (kept)
    "missing_image",  # an annotation without its image
    "missing_annotation",  # an image without its annotation file
    "unreadable_image",  # an image that cannot be decoded
    "size_mismatch",  # the annotation's image size differs from the image file's (file wins)
    "empty_image",  # an image with no usable object (kept all-255, or dropped by config)
    "nodata_box",  # geo: a box lying wholly on nodata pixels
    "malformed_vector",  # geo: a vector file that cannot be read, or a feature that is no polygon
    "crowd_region",  # COCO: an iscrowd annotation (a region of many objects, not one object)
)


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    kind: str
    message: str
    action: str = "skipped"  # what was done: skipped (object or image), clipped, kept, dropped

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message} ({self.action})"

    def to_dict(self) -> dict:
        return asdict(self)


class BadInputError(UserError, ValueError):
    """Raised at a problem that stops the run (strict mode, a training file gone bad); carries it."""

    def __init__(self, problem: Problem, hint: str = "") -> None:
        super().__init__(f"{problem}; {hint}" if hint else str(problem))
        self.problem, self.hint = problem, hint

    def __reduce__(self):  # through worker processes with its problem, not only its text
        return type(self), (self.problem, self.hint)


Report = Callable[[Problem], None]
STRICT_HINT = "strict=true stops at the first bad input (strict=false skips it and lists it in report.json)"


def raise_problem(problem: Problem) -> None:
    """The strict report callback: the problem stops the run."""
    raise BadInputError(replace(problem, action="stopped"), STRICT_HINT)


@dataclass(frozen=True)
class BorderRules:
    """What a reader does with boxes at and beyond the image border (samrs.sources.common.ObjectChecker).

    `min_visible`: an object with less of its area inside the image is dropped, as a tile drops it
    (the label job passes `tiling.min_visible`); one kept is clipped and marked truncated.
    `implausible_scale`: a box wider or taller than this many times the image is a broken coordinate
    (`implausible_box`, skipped), not an object to clip.
    """

    min_visible: float = 0.7
    implausible_scale: float = 2.0


@dataclass(frozen=True)
class SourceItem:
    """One image of a dataset: its name, where its files are (either may be missing), and the
    dataset's official split it belongs to (its split folder or split file; None when unknown)."""

    name: str
    image_path: Path | None
    annotation_path: Path | None
    split: str | None = None


def is_test_split(split: str | None) -> bool:
    """Whether an official split is a test split: `test`, and DOTA's `test-dev`, `test-challenge`
    (by its first folder, case aside). Its images are kept out of training (docs/labeling.md)."""
    return split is not None and Path(split).parts[0].lower().startswith("test")


@dataclass
class WindowPixels:
    """A window of a windowed source (a tile of a GeoTIFF scene), read without decoding the rest."""

    rgb: np.ndarray  # (h, w, 3) uint8: what labelers see
    valid: np.ndarray | None = None  # (h, w) bool: False on nodata and beyond the image (never labeled)
    bands: np.ndarray | None = None  # (h, w, N) every band in the source's data type (output.bands=all)


class Source(ABC):
    """A detection dataset on disk, read into ImageRecords with class ids of `classes`.

    A `windowed` source (GeoTIFF scenes of any size) also gives `image_size(item)` from the header
    and `read_window(record, x, y, width, height, fill, all_bands)`: the label job then reads each
    tile on its own and never decodes a whole image. `georeferenced`: its images have a CRS (known
    once `items` has run), so the label job writes GeoTIFFs (output_format=auto).
    """

    name: str = ""
    border_rules: BorderRules = BorderRules()
    windowed: bool = False
    georeferenced: bool = False

    def __init__(self, root: str | Path, classes: SubsetClasses) -> None:
        self.root = Path(root)
        self.classes = classes
        if not self.root.is_dir():
            raise MissingPathError(f"{self.root}: dataset root not found (set source.root=DIR)")

    @abstractmethod
    def items(self, report: Report) -> list[SourceItem]:
        """Every image of the selected split, sorted by name; unpaired files are reported."""

    @abstractmethod
    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        """The item's record (objects in the subset's class ids), or None when it must be skipped."""

    def describe(self) -> dict[str, Any]:
        """What meta.json records of the source beyond its name and root (a resumed label run must
        keep it, data locations aside); nothing for the dataset readers."""
        return {}

    def image_size(self, item: SourceItem) -> tuple[int, int] | None:
        """(width, height) of a windowed source's image, from its header; None: unknown."""
        return None

    def read_window(self, record: ImageRecord, x: int, y: int, width: int, height: int, fill: int,
                    all_bands: bool) -> WindowPixels:
        """The pixels of a window of a windowed source's image (beyond the image: `fill`)."""
        raise NotImplementedError(f"source {self.name} is not windowed: decode its images whole")
