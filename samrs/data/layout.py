"""Where a subset's files are, which images a split lists, and the checks every pair must pass.

One layout class reads both samrs' own output (images/, labels/, train.txt, val.txt) and the
officially released SAMRS archives or any plain images/ + labels/ + split-file tree: folder names,
file name prefixes and suffixes and split listings are settings. A split is listed by a file, by
the names themselves, by a glob pattern over the image folder, or (null) derived from the image
folder by samrs' deterministic name hash (the same 95/5 split the labeler writes).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from samrs.classes import IGNORE_INDEX
from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.labeling.writer import make_splits
from samrs.sources.base import Problem


@dataclass(frozen=True)
class SubsetLayout:
    """Folder names, file suffixes and split files of one subset, relative to its root."""

    image_dir: str = "images"
    label_dir: str = "labels"
    image_suffix: str = ".png"
    label_suffix: str = ".png"
    # file name = prefix + name + suffix (ISPRS Potsdam: top_potsdam_2_10_RGB.tif for image 2_10)
    image_prefix: str = ""
    label_prefix: str = ""
    # split -> a file listing one image name per line, the list of names itself, a glob pattern
    # matched against the names in image_dir or a sub-folder of it ("*", "P[0-9][0-9][0-9][0-9]",
    # "train/*"), a list of such patterns, or null: split the image folder by name hash
    split_files: Mapping[str, str | Sequence[str] | None] = field(
        default_factory=lambda: {"train": "train.txt", "val": "val.txt"})
    val_fraction: float = 0.05
    # a folder between a name's own folders and its file, when images and labels sit in sibling
    # folders below the name's (LoveDA: name Train/Urban/1366 is Train/Urban/images_png/1366.png and
    # Train/Urban/masks_png/1366.png)
    image_subdir: str = ""
    label_subdir: str = ""

    def image_path(self, root: Path, name: str) -> Path:
        return _file_path(root / self.image_dir, self.image_subdir, self.image_prefix, name, self.image_suffix)

    def label_path(self, root: Path, name: str) -> Path:
        return _file_path(root / self.label_dir, self.label_subdir, self.label_prefix, name, self.label_suffix)

    def split_names(self, root: Path, split: str) -> list[str]:
        """The image names of `split`, in listed order (sorted for patterns); a clear error for a
        missing or bad listing."""
        if split not in self.split_files:
            raise ConfigError(f"{root}: no split file configured for split {split!r} (split_files has "
                              f"{', '.join(self.split_files)})")
        listing = self.split_files[split]
        if listing is None:
            return self._hashed_split(root, split)
        if not isinstance(listing, str):
            numbers = [n for n in listing if not isinstance(n, str)]
            if numbers:
                raise ConfigError(f"split {split}: names must be strings, got {numbers[0]!r}; quote them in YAML "
                                  f"(unquoted, 2_10 reads as the number 210)")
            # names, or patterns (LoveDA's [Train/Urban/*, Train/Rural/*]) each matched on its own
            names = [n for entry in listing for n in (self._matches(root, split, entry) if _is_pattern(entry)
                                                      else [entry])]
            return _checked_names(names, f"{root}: split_files.{split}")
        if _is_pattern(listing):
            return self._matches(root, split, listing)
        path = root / listing
        if not path.is_file():
            raise MissingPathError(
                f"{path}: split file not found; set the subset's split_files.{split} to the file that lists "
                f"the {split} images, or to null to split {root / self.image_dir} by name hash")
        names = [self._strip(line.strip()) for line in path.read_text().splitlines() if line.strip()]
        return _checked_names(names, str(path))

    def _matches(self, root: Path, split: str, pattern: str) -> list[str]:
        """The names a glob pattern matches, maybe in a sub-folder (train/*), sorted."""
        sub, _, tail = pattern.rpartition("/")
        names = [f"{sub}/{n}" if sub else n for n in self.folder_names(root, sub) if fnmatchcase(n, tail)]
        if not names:
            raise ConfigError(f"{root / self.image_dir}: no image name matches split_files.{split}={pattern!r}")
        return names

    def _strip(self, entry: str) -> str:
        """Split files may list 'name', 'name.png' or 'images/name.png' (with the file name prefix)."""
        entry = entry.replace("\\", "/")
        if entry.startswith(f"{self.image_dir}/"):
            entry = entry[len(self.image_dir) + 1:]
        if self.image_prefix and entry.startswith(self.image_prefix):
            entry = entry[len(self.image_prefix):]
        return entry[: -len(self.image_suffix)] if entry.endswith(self.image_suffix) else entry

    def folder_names(self, root: Path, sub: str = "") -> list[str]:
        """The names of every prefix + name + suffix file in the image folder (or its sub-folder
        `sub`, and then image_subdir), sorted."""
        folder = root / self.image_dir / sub / self.image_subdir
        if not folder.is_dir():
            raise MissingPathError(f"{folder}: image folder not found (check the subset's root and image_dir)")
        head, tail = self.image_prefix, self.image_suffix
        names = sorted(p.name[len(head): len(p.name) - len(tail)] for p in folder.iterdir()
                       if p.name.startswith(head) and p.name.endswith(tail) and len(p.name) > len(head) + len(tail))
        if not names:
            raise ConfigError(f"{folder}: no {head}*{tail} images (check image_prefix and image_suffix)")
        return names

    def _hashed_split(self, root: Path, split: str) -> list[str]:
        names = self.folder_names(root)
        if split not in ("train", "val"):
            raise ConfigError(f"{root}: split {split!r} has no split file and only train/val can be derived")
        return make_splits(names, self.val_fraction)[split]


def _file_path(folder: Path, subdir: str, prefix: str, name: str, suffix: str) -> Path:
    """folder / the name's own folders / subdir / prefix + the name's last part + suffix."""
    head, _, base = name.rpartition("/")
    return folder / head / subdir / f"{prefix}{base}{suffix}"


def _is_pattern(entry: str) -> bool:
    return any(c in entry for c in "*?[")


def _checked_names(names: list[str], where: str) -> list[str]:
    """A split's names: at least one, none twice."""
    if not names:
        raise BadFileError(f"{where}: the split lists no images")
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise BadFileError(f"{where}: {len(repeated)} names listed more than once (first: {repeated[0]}); "
                           "each image must be listed once so that an epoch sees it once")
    return names


def missing_files(root: Path, layout: SubsetLayout, names: list[str]) -> dict[str, Problem]:
    """name -> problem for each listed name whose image or label file does not exist (one directory
    listing per folder, not a stat per file)."""
    present: dict[Path, set[str]] = {}

    def exists(path: Path) -> bool:
        if path.parent not in present:
            try:
                present[path.parent] = set(os.listdir(path.parent))
            except FileNotFoundError:
                present[path.parent] = set()
        return path.name in present[path.parent]

    problems: dict[str, Problem] = {}
    for name in names:
        for what, path in (("image", layout.image_path(root, name)), ("label", layout.label_path(root, name))):
            if not exists(path):
                problems.setdefault(name, missing_file(path, what, name))
    return problems


def missing_file(path: Path, what: str, name: str, action: str = "skipped") -> Problem:
    """The problem of listed image `name` whose `what` ("image" or "label") file does not exist."""
    kind = "missing_image" if what == "image" else "missing_annotation"
    return Problem(str(path), None, kind, f"{what} of listed image {name} not found", action)


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
