"""Writes one SAMRS-format subset (DESIGN.md "Output of one subset").

Each image is written as images/, labels/ and color/ PNGs and then a per-image part file
(.samrs_parts/<name>.json) holding its COCO image and annotation entries. The part is written last
and atomically, so its presence means the image is complete: an interrupted run resumes by skipping
the names that have a part, and `finalize` merges the parts into instances.json, meta.json and the
split files. Writers on several processes (DDP ranks) can share one output directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import numpy as np

import samrs
from samrs.classes import SubsetClasses
from samrs.labeling.base import InstanceMask
from samrs.labeling.overlap import colorize, paint_label_map
from samrs.labeling.rle import crop_to_rle
from samrs.sources.base import is_test_split
from samrs.utils.io import write_json, write_png, write_text

PARTS_DIR = ".samrs_parts"


def split_of(name: str, val_fraction: float) -> str:
    """'val' for a stable pseudo-random `val_fraction` of names (hash of the name), else 'train'.

    Hashing keeps an image's split the same however many images there are and in whatever order
    they were written (resumed or sharded runs).
    """
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 2**32
    return "val" if h < val_fraction else "train"


def make_splits(names: Sequence[str], val_fraction: float, test: Collection[str] = ()) -> dict[str, list[str]]:
    """train/val/test lists: the `test` names (images of the source's test split) only in test, the
    others split train/val by name hash; with 2+ of them and val_fraction > 0 val is never empty."""
    test = set(test)
    names = sorted(n for n in names if n not in test)
    val = [n for n in names if split_of(n, val_fraction) == "val"]
    if not val and len(names) > 1 and val_fraction > 0:
        val = [min(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())]
    val_set = set(val)
    return {"train": [n for n in names if n not in val_set], "val": val, "test": sorted(test)}


def annotation_entry(inst: InstanceMask, height: int, width: int, rbox: np.ndarray | None) -> dict[str, Any]:
    """COCO annotation (without ids) of one instance: bbox, RLE, area, class, score, prompt."""
    ys, xs = np.nonzero(inst.mask)
    bbox = [float(inst.x0 + xs.min()), float(inst.y0 + ys.min()),
            float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    entry = {
        "category_id": int(inst.class_id),
        "bbox": bbox,
        "area": int(xs.size),
        "segmentation": crop_to_rle(inst.mask, inst.x0, inst.y0, height, width),
        "iscrowd": 0,
        "score": None if inst.score is None else float(inst.score),
        "prompt": inst.prompt,
        "object_index": int(inst.object_index),
    }
    if rbox is not None:
        entry["rbox"] = [round(float(v), 2) for v in np.asarray(rbox).reshape(-1)]
    if inst.outside:
        entry["outside"] = int(inst.outside)
    if inst.concept_score is not None:
        entry["concept_score"] = float(inst.concept_score)
    return entry


class SubsetWriter:
    """Writes images, label maps, colour renderings and COCO parts of one subset."""

    def __init__(
        self,
        output_dir: str | Path,
        classes: SubsetClasses,
        overlap: str = "smaller_on_top",
        write_color: bool = True,
        val_fraction: float = 0.05,
    ) -> None:
        self.root = Path(output_dir)
        self.classes = classes
        self.overlap = overlap
        self.write_color = write_color
        self.val_fraction = val_fraction
        self.parts = self.root / PARTS_DIR

    def is_done(self, name: str) -> bool:
        return (self.parts / f"{name}.json").is_file()

    def done_names(self) -> set[str]:
        return {p.stem for p in self.parts.glob("*.json")} if self.parts.is_dir() else set()

    def write(
        self,
        name: str,
        image: np.ndarray,
        instances: Sequence[InstanceMask],
        rboxes: Sequence[np.ndarray | None] | None = None,
        image_extras: dict[str, Any] | None = None,
        annotation_extras: Sequence[dict[str, Any]] | None = None,
    ) -> np.ndarray:
        """Write one image and its instances; returns the label map. The part file goes last.

        `rboxes` and `annotation_extras` (fields added to each COCO annotation) follow `instances`.
        """
        height, width = image.shape[:2]
        label = paint_label_map(instances, height, width, self.overlap)
        write_png(self.root / "images" / f"{name}.png", image)
        write_png(self.root / "labels" / f"{name}.png", label)
        if self.write_color:
            write_png(self.root / "color" / f"{name}.png", colorize(label, self.classes.palette))
        rboxes = rboxes if rboxes is not None else [None] * len(instances)
        extras = annotation_extras if annotation_extras is not None else [{}] * len(instances)
        part = {
            "image": {"file_name": f"images/{name}.png", "width": width, "height": height, **(image_extras or {})},
            "annotations": [{**annotation_entry(i, height, width, r), **e}
                            for i, r, e in zip(instances, rboxes, extras) if i.mask.any()],
        }
        write_json(self.parts / f"{name}.json", part, indent=None)
        return label

    def finalize(self, meta: dict[str, Any] | None = None,
                 source_splits: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """Merge every part into instances.json; write meta.json and the split files.

        An image whose source image is in the source's test split (`source_splits`: source image
        name -> official split, from this run's listing; else the split its part recorded) goes to
        test.txt only; the others are split 95/5 (`val_fraction`) into train.txt and val.txt.
        """
        names = sorted(self.done_names())
        images, annotations = [], []
        per_class = np.zeros(self.classes.num_classes, dtype=np.int64)
        empty = cut = outside = 0
        official: dict[str, str | None] = {}
        for image_id, name in enumerate(names, start=1):
            part = json.loads((self.parts / f"{name}.json").read_text())
            source = part["image"].get("source_image", name)
            known = source_splits is not None and source in source_splits
            official[name] = source_splits[source] if known else part["image"].get("source_split")
            images.append({"id": image_id, **part["image"], **({"source_split": official[name]} if known else {})})
            empty += not part["annotations"]
            for ann in part["annotations"]:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
                per_class[ann["category_id"]] += 1
                cut += ann.get("outside", 0) > 0
                outside += ann.get("outside", 0)
        categories = [{"id": i, "name": n} for i, n in enumerate(self.classes.names)]
        write_json(self.root / "instances.json", {"images": images, "annotations": annotations,
                                                  "categories": categories}, indent=None)
        splits = make_splits(names, self.val_fraction, [n for n in names if is_test_split(official[n])])
        for split, members in splits.items():
            if members or split != "test":
                write_text(self.root / f"{split}.txt", "".join(f"{n}\n" for n in members))
            else:  # a relabeled subset whose test images are gone
                (self.root / "test.txt").unlink(missing_ok=True)
        per_split: dict[str, int] = {}
        for split in official.values():
            per_split[str(split)] = per_split.get(str(split), 0) + 1
        counts = {
            "images": len(names),
            "instances": len(annotations),
            "empty_images": empty,
            "train_images": len(splits["train"]),
            "val_images": len(splits["val"]),
            "test_images": len(splits["test"]),
            "images_per_source_split": dict(sorted(per_split.items())),  # "None": split unknown
            "instances_with_outside": cut,  # masks the kept region cut (annotation field `outside` > 0)
            "outside_pixels": outside,
            "instances_per_class": {n: int(c) for n, c in zip(self.classes.names, per_class)},
        }
        full_meta = {
            "subset": self.classes.name,
            "classes": list(self.classes.names),
            "palette": [list(c) for c in self.classes.palette],
            "ignore_index": 255,
            "overlap": self.overlap,
            "write_color": self.write_color,
            "val_fraction": self.val_fraction,
            "samrs_version": samrs.__version__,
            **(meta or {}),
            "counts": counts,
            # images of the source's test split: in test.txt, never in train.txt or val.txt (samrs.train checks)
            "test_names": splits["test"],
        }
        write_json(self.root / "meta.json", full_meta)
        return full_meta
