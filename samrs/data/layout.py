"""Where a subset's files are, which images a split lists, and the checks every pair must pass.

One layout class reads both samrs' own output (images/, labels/, train.txt, val.txt) and the
officially released SAMRS archives or any plain images/ + labels/ + split-file tree: folder names,
suffixes and split files are settings. A split set to null is derived from the image folder by
samrs' deterministic name hash (the same 95/5 split the labeler writes).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from samrs.classes import IGNORE_INDEX
from samrs.labeling.writer import make_splits
from samrs.sources.base import Problem


@dataclass(frozen=True)
class SubsetLayout:
    """Folder names, file suffixes and split files of one subset, relative to its root."""

    image_dir: str = "images"
    label_dir: str = "labels"
    image_suffix: str = ".png"
    label_suffix: str = ".png"
    # split -> file listing one image name per line; null: split the image folder by name hash
    split_files: Mapping[str, str | None] = field(default_factory=lambda: {"train": "train.txt", "val": "val.txt"})
    val_fraction: float = 0.05

    def image_path(self, root: Path, name: str) -> Path:
        return root / self.image_dir / f"{name}{self.image_suffix}"

    def label_path(self, root: Path, name: str) -> Path:
        return root / self.label_dir / f"{name}{self.label_suffix}"

    def split_names(self, root: Path, split: str) -> list[str]:
        """The image names of `split`, in file order; a clear error for a missing or bad list."""
        if split not in self.split_files:
            raise KeyError(f"{root}: no split file configured for split {split!r} (split_files has "
                           f"{', '.join(self.split_files)})")
        listing = self.split_files[split]
        if listing is None:
            return self._hashed_split(root, split)
        path = root / listing
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: split file not found; set the subset's split_files.{split} to the file that lists "
                f"the {split} images, or to null to split {root / self.image_dir} by name hash")
        names = [self._strip(line.strip()) for line in path.read_text().splitlines() if line.strip()]
        if not names:
            raise ValueError(f"{path}: the split lists no images")
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            raise ValueError(f"{path}: {len(repeated)} names listed more than once (first: {repeated[0]}); "
                             "each image must be listed once so that an epoch sees it once")
        return names

    def _strip(self, entry: str) -> str:
        """Split files may list 'name', 'name.png' or 'images/name.png'."""
        entry = entry.replace("\\", "/")
        if entry.startswith(f"{self.image_dir}/"):
            entry = entry[len(self.image_dir) + 1:]
        return entry[: -len(self.image_suffix)] if entry.endswith(self.image_suffix) else entry

    def _hashed_split(self, root: Path, split: str) -> list[str]:
        folder = root / self.image_dir
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: image folder not found (check the subset's root and image_dir)")
        names = sorted(p.name[: -len(self.image_suffix)] for p in folder.iterdir()
                       if p.name.endswith(self.image_suffix))
        if not names:
            raise ValueError(f"{folder}: no *{self.image_suffix} images (check image_suffix)")
        if split not in ("train", "val"):
            raise ValueError(f"{root}: split {split!r} has no split file and only train/val can be derived")
        return make_splits(names, self.val_fraction)[split]


def missing_files(root: Path, layout: SubsetLayout, names: list[str]) -> dict[str, Problem]:
    """name -> problem for each listed name whose image or label file does not exist (one directory
    listing per folder, not a stat per file)."""
    present = {}
    for folder in (layout.image_dir, layout.label_dir):
        try:
            present[folder] = set(os.listdir(root / folder))
        except FileNotFoundError:
            present[folder] = set()
    problems: dict[str, Problem] = {}
    for name in names:
        for kind, path, folder, suffix in (
            ("missing_image", layout.image_path(root, name), layout.image_dir, layout.image_suffix),
            ("missing_annotation", layout.label_path(root, name), layout.label_dir, layout.label_suffix),
        ):
            found = f"{name}{suffix}" in present[folder] if "/" not in name else path.is_file()
            if not found:
                what = "image" if kind == "missing_image" else "label"
                problems.setdefault(name, Problem(str(path), None, kind, f"{what} of listed image {name} not found"))
    return problems


def pair_problem(image_path: Path, label_path: Path, image: np.ndarray, label: np.ndarray,
                 num_classes: int) -> Problem | None:
    """Sizes that disagree, or label values that are neither class ids nor the ignore index."""
    if image.shape[:2] != label.shape[:2]:
        return Problem(str(label_path), None, "size_mismatch",
                       f"label is {label.shape[1]}x{label.shape[0]} but image {image_path.name} is "
                       f"{image.shape[1]}x{image.shape[0]} (width x height)")
    outside = (label >= num_classes) & (label != IGNORE_INDEX)
    if outside.any():
        bad = np.unique(label[outside]).tolist()
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        return Problem(str(label_path), None, "invalid_label",
                       f"label values {shown} are not class ids (0..{num_classes - 1}) nor {IGNORE_INDEX}")
    return None
