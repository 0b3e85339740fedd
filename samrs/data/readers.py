"""Pixel readers: `open(name)` gives a sample with its size and `read(window)`.

FileReader decodes the image and label files in full and checks them on every read; BlockReader
reads the block cache (checked once, when it was built) and decodes only the blocks a window covers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from samrs.data.blocks import BlockFile, Window
from samrs.data.labels import UnknownLabelError
from samrs.data.layout import SubsetLayout, missing_file, pair_problem
from samrs.sources.base import BadInputError, Problem
from samrs.utils.io import read_label, read_rgb

LabelReader = Callable[[Path], np.ndarray]
ImageReader = Callable[[Path], np.ndarray]


class BandReader:
    """Reads the bands of multispectral images (a GeoTIFF subset written with output.bands=all) in
    their data type: `bands` N for the first N, or a list of 1-based band indexes (data.bands).
    `key`: what the block cache stamps the images with, so other bands are never mixed up."""

    def __init__(self, bands: int | Sequence[int]) -> None:
        self.bands = bands if isinstance(bands, int) else [int(b) for b in bands]
        self.key = {"bands": self.bands}

    @property
    def channels(self) -> int:
        return self.bands if isinstance(self.bands, int) else len(self.bands)

    def __call__(self, path: Path) -> np.ndarray:
        from samrs.utils.geo import read_raster

        return read_raster(path, self.bands)


class ArraySample:
    """A decoded image and label held in memory."""

    def __init__(self, image: np.ndarray, label: np.ndarray) -> None:
        self.image, self.label = image, label
        self.height, self.width = label.shape

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        top, bottom, left, right = window
        return self.image[top:bottom, left:right], self.label[top:bottom, left:right]


def load_pair(root: Path, layout: SubsetLayout, name: str, num_classes: int,
              read_labels: LabelReader = read_label, read_image: ImageReader = read_rgb) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image (by `read_image`: 8-bit RGB, or a BandReader's bands) and its label (class
    ids, by `read_labels`); BadInputError naming the file when either is unusable."""
    image_path, label_path = layout.image_path(root, name), layout.label_path(root, name)
    image = _decode(image_path, read_image, "image", name)
    label = _decode(label_path, read_labels, "label", name)
    problem = pair_problem(image_path, label_path, image, label, num_classes)
    if problem is not None:
        raise BadInputError(replace(problem, action="stopped"))
    return image, label


def _decode(path: Path, read, what: str, name: str) -> np.ndarray:
    if not path.is_file():
        raise BadInputError(missing_file(path, what, name, "stopped"))
    try:
        return read(path)
    except UnknownLabelError as err:
        raise BadInputError(Problem(str(path), None, "invalid_label", str(err).removeprefix(f"{path}: "),
                                    "stopped")) from err
    except (OSError, ValueError) as err:
        raise BadInputError(Problem(str(path), None, "unreadable_image", f"cannot decode it ({err})", "stopped")) from err


class FileReader:
    """Reads the subset's own files: a full decode per sample (the uncached, checked path)."""

    def __init__(self, root: str | Path, layout: SubsetLayout, num_classes: int,
                 read_labels: LabelReader = read_label, read_image: ImageReader = read_rgb) -> None:
        self.root, self.layout, self.num_classes, self.read_labels = Path(root), layout, num_classes, read_labels
        self.read_image = read_image

    def open(self, name: str) -> ArraySample:
        return ArraySample(*load_pair(self.root, self.layout, name, self.num_classes, self.read_labels,
                                      self.read_image))


class BlockReader:
    """Reads `<directory>/<name>.blk` block files written by the subset cache."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def open(self, name: str) -> BlockFile:
        return BlockFile(self.directory / f"{name}.blk")
