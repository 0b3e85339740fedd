"""Finds the files of one SAMRS-format subset and reads its class list, without loading the data.

Layout (DESIGN.md "Output of one subset"): labels/<name>.png, images/<name>.png, instances.json,
meta.json (classes, palette), train.txt / val.txt. A labeling run that has not finished yet has no
instances.json and meta.json but its per-image parts (.samrs_parts/<name>.json): those are read
instead, so a run can be checked while it is still going.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator

from samrs.analysis.coco_stream import iter_annotations, iter_images
from samrs.classes import SubsetClasses, subset_classes
from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.labeling.writer import PARTS_DIR
from samrs.utils.io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class SubsetFiles:
    """Where the parts of one subset are, and its classes."""

    root: Path
    name: str
    classes: SubsetClasses
    labels_dir: Path
    images_dir: Path
    instances_path: Path | None  # instances.json, or None
    parts_dir: Path | None  # an unfinished run's per-image parts, used when instances.json is absent
    meta: dict[str, Any] = field(default_factory=dict)

    def label_paths(self) -> list[Path]:
        """Every label PNG, sorted by name."""
        return sorted(p for p in self.labels_dir.iterdir() if p.suffix.lower() == ".png")

    @cached_property
    def _image_paths(self) -> dict[str, Path]:
        if not self.images_dir.is_dir():
            return {}
        return {p.stem: p for p in self.images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}

    def image_path(self, name: str) -> Path | None:
        """The image of label `name` (any image suffix), or None when there is none."""
        return self._image_paths.get(name)

    def split_sizes(self) -> dict[str, int]:
        """Number of names in train.txt / val.txt (the splits that exist)."""
        sizes = {}
        for split in ("train", "val"):
            path = self.root / f"{split}.txt"
            if path.is_file():
                with open(path) as f:
                    sizes[split] = sum(1 for line in f if line.strip())
        return sizes

    @property
    def has_instances(self) -> bool:
        return self.instances_path is not None or self.parts_dir is not None

    @cached_property
    def instance_images(self) -> dict[Any, str]:
        """Image id -> name of every image the instance annotations cover, including images without
        instances (an unfinished run's parts are keyed by name)."""
        if self.instances_path is not None:
            return {im["id"]: Path(im["file_name"]).stem for im in iter_images(self.instances_path)}
        if self.parts_dir is not None:
            return {p.stem: p.stem for p in sorted(self.parts_dir.glob("*.json"))}
        return {}

    def iter_annotations(self) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """(image name, COCO annotation) for every instance, streamed; the name is None when the
        annotation refers to an image id that instances.json does not list."""
        if self.instances_path is not None:
            for ann in iter_annotations(self.instances_path):
                yield self.instance_images.get(ann.get("image_id")), ann
        elif self.parts_dir is not None:
            for name in self.instance_images:
                for ann in _read_json(self.parts_dir / f"{name}.json").get("annotations", []):
                    yield name, ann

    @property
    def annotations_source(self) -> str:
        """The file (or folder) the instances are read from, for messages."""
        return str(self.instances_path or self.parts_dir or "none")


def open_subset(
    root: str | Path,
    classes: str | None = None,
    labels_dir: str = "labels",
    images_dir: str = "images",
    instances_file: str = "instances.json",
) -> SubsetFiles:
    """The files of the subset at `root`; `classes` names a class list (samrs.classes) for a subset
    without meta.json, and overrides meta.json's list when given."""
    root = Path(root)
    if not root.is_dir():
        raise MissingPathError(f"{root}: subset directory not found")
    labels = root / labels_dir
    if not labels.is_dir():
        raise MissingPathError(f"{labels}: no label folder; is {root} a SAMRS-format subset?")
    meta_path = root / "meta.json"
    meta = _read_json(meta_path) if meta_path.is_file() else {}
    instances = root / instances_file
    parts = root / PARTS_DIR
    return SubsetFiles(
        root=root,
        name=str(meta.get("subset") or root.name),
        classes=_classes(meta, classes, meta_path),
        labels_dir=labels,
        images_dir=root / images_dir,
        instances_path=instances if instances.is_file() else None,
        parts_dir=parts if not instances.is_file() and parts.is_dir() else None,
        meta=meta,
    )


def _classes(meta: dict[str, Any], name: str | None, meta_path: Path) -> SubsetClasses:
    if name:
        return subset_classes(name)
    if "classes" not in meta:
        raise ConfigError(
            f"{meta_path}: missing, or without a class list; name the subset's classes with "
            f"classes=NAME (sota, sior, fast, hrsc2016, isaid, potsdam)"
        )
    palette = tuple(tuple(int(v) for v in c) for c in meta.get("palette") or ())
    return SubsetClasses(str(meta.get("subset", meta_path.parent.name)), tuple(meta["classes"]), palette)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BadFileError(f"{path}: cannot read JSON ({e})") from None
