"""Counts of one subset, gathered in one streaming pass over its label PNGs and one over its instances.

Nothing grows with the size of the masks: each label map is reduced to a 256-bin histogram as soon
as it is read (in worker processes when asked), each RLE to its area (pycocotools computes it from
the run lengths without decoding), and areas go into fixed histograms. What grows with the number
of images is small: one name and one instance count per image.
"""

from __future__ import annotations

import multiprocessing
from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from rich.progress import track

from samrs.analysis.subset import SubsetFiles
from samrs.classes import IGNORE_INDEX
from samrs.errors import ConfigError
from samrs.sources.base import Problem
from samrs.utils.io import read_label
from samrs.utils.workers import WorkerInit


@dataclass(frozen=True)
class StatsSettings:
    """The bins and limits of a stats run (conf/stats.yaml)."""

    mask_size_sides: tuple[int, ...]  # mask-size bin edges, as square side lengths in px
    size_groups: dict[str, int]  # name -> upper side (px) of the group, in increasing order
    objects_per_image_edges: tuple[int, ...]  # lower edges of the objects-per-image bins
    labeled_fraction_bins: int
    top_image_sizes: int
    max_problem_examples: int
    check_images: bool = True

    @classmethod
    def from_config(cls, cfg: Any) -> StatsSettings:
        """The settings of a composed conf/stats.yaml."""
        edges = tuple(int(v) for v in cfg.objects_per_image_edges)
        if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ConfigError(f"objects_per_image_edges must start at 0 and increase, got {list(edges)}")
        return cls(
            mask_size_sides=tuple(int(v) for v in cfg.mask_size.bins),
            size_groups={str(k): int(v) for k, v in cfg.mask_size.groups.items()},
            objects_per_image_edges=edges,
            labeled_fraction_bins=int(cfg.labeled_fraction_bins),
            top_image_sizes=int(cfg.top_image_sizes),
            max_problem_examples=int(cfg.max_problem_examples),
            check_images=bool(cfg.check_images),
        )

    @property
    def area_edges(self) -> np.ndarray:
        """Inner edges of the mask-size bins in px (side ** 2): bin i is [edge[i-1], edge[i])."""
        sides = np.asarray(self.mask_size_sides, dtype=np.int64)
        if sides.size == 0 or np.any(np.diff(sides) <= 0) or sides[0] <= 0:
            raise ConfigError(f"mask_size.bins must be increasing positive side lengths, got {list(sides)}")
        return sides**2

    def mask_size_labels(self) -> list[str]:
        s = self.mask_size_sides
        return [f"<{s[0]}²"] + [f"{a}²–{b}²" for a, b in zip(s[:-1], s[1:])] + [f"≥{s[-1]}²"]

    def group_names(self) -> list[str]:
        return [*self.size_groups, "large"]

    @property
    def group_edges(self) -> np.ndarray:
        return np.asarray(list(self.size_groups.values()), dtype=np.int64) ** 2


@dataclass(frozen=True)
class LabelSummary:
    """What the stats keep of one label map (and the header of its image)."""

    name: str
    path: str
    height: int = 0
    width: int = 0
    hist: np.ndarray | None = None  # (256,) pixels per label value; None when the label is unreadable
    image_size: tuple[int, int] | None = None  # (width, height) of the image file, when checked
    channels: int | None = None
    problem: Problem | None = None


def summarize_label(label_path: Path, image_path: Path | None) -> LabelSummary:
    """Histogram of one label PNG, and the size and bands of its image read from the file header."""
    name = label_path.stem
    try:
        label = read_label(label_path)
    except (OSError, ValueError) as e:
        return LabelSummary(name, str(label_path), problem=Problem(str(label_path), None, "unreadable_label", str(e)))
    hist = np.bincount(label.ravel(), minlength=256).astype(np.int64)
    image_size = channels = None
    problem = None
    if image_path is not None:
        try:
            with Image.open(image_path) as im:
                image_size, channels = im.size, len(im.getbands())
        except OSError as e:
            problem = Problem(str(image_path), None, "unreadable_image", str(e), "counted")
    return LabelSummary(name, str(label_path), label.shape[0], label.shape[1], hist, image_size, channels, problem)


def _summarize(args: tuple[Path, Path | None]) -> LabelSummary:
    return summarize_label(*args)


def iter_label_summaries(
    files: SubsetFiles, check_images: bool, num_workers: int, progress: bool
) -> Iterator[LabelSummary]:
    """LabelSummary of every label of the subset, in name order; `num_workers` > 0 decodes the PNGs
    in that many processes (decoding is what takes the time)."""
    paths = files.label_paths()
    jobs = [(p, files.image_path(p.stem) if check_images else None) for p in paths]
    description = f"{files.name}: labels"
    if num_workers <= 0:
        yield from track(map(_summarize, jobs), total=len(jobs), description=description, disable=not progress)
        return
    with multiprocessing.Pool(num_workers, initializer=WorkerInit()) as pool:
        results = pool.imap(_summarize, jobs, chunksize=8)
        yield from track(results, total=len(jobs), description=description, disable=not progress)


class ProblemLog:
    """Counts problems by kind and keeps the first few of each kind as examples."""

    def __init__(self, max_examples: int) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: list[Problem] = []
        self.max_examples = max_examples

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if self.counts[problem.kind] <= self.max_examples:
            self.examples.append(problem)

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(sorted(self.counts.items())), "examples": [p.to_dict() for p in self.examples]}


class SubsetCounts:
    """Accumulates the counts of one subset from label summaries and instance annotations."""

    def __init__(self, files: SubsetFiles, settings: StatsSettings) -> None:
        self.files = files
        self.settings = settings
        n = files.classes.num_classes
        self.num_classes = n
        self.pixels = np.zeros(256, dtype=np.int64)
        self.image_sizes: Counter[tuple[int, int]] = Counter()
        self.channels: Counter[int] = Counter()
        self.fraction_hist = np.zeros(settings.labeled_fraction_bins, dtype=np.int64)
        self.fraction_sum = 0.0
        self.label_names: set[str] = set()
        # Per-instance counts go into plain lists: one numpy scalar update costs more than the
        # parsing and area of the instance together.
        self.area_edges = settings.area_edges.tolist()
        self.group_edges = settings.group_edges.tolist()
        self.instances = [0] * n
        self.instance_pixels = [0] * n
        self.size_hist = [[0] * (len(self.area_edges) + 1) for _ in range(n)]
        self.group_hist = [[0] * (len(self.group_edges) + 1) for _ in range(n)]
        self.objects: Counter[str] = Counter()
        self.area_min: int | None = None
        self.area_max = 0
        self.problems = ProblemLog(settings.max_problem_examples)

    # label maps ------------------------------------------------------------------------------
    def add_label(self, s: LabelSummary) -> None:
        if s.hist is None:
            self.problems.add(s.problem)
            return
        self.label_names.add(s.name)
        self.pixels += s.hist
        self.image_sizes[(s.width, s.height)] += 1
        labeled = int(s.hist[: self.num_classes].sum())
        fraction = labeled / max(s.width * s.height, 1)
        self.fraction_sum += fraction
        bins = self.settings.labeled_fraction_bins
        self.fraction_hist[min(int(fraction * bins), bins - 1)] += 1
        unknown = np.flatnonzero(s.hist[self.num_classes : IGNORE_INDEX]) + self.num_classes
        if unknown.size:
            self.problems.add(Problem(s.path, None, "unknown_label_id",
                                      f"label values {unknown.tolist()} are not class ids (0..{self.num_classes - 1}) "
                                      f"nor {IGNORE_INDEX}", "not counted as labeled"))
        self._check_image(s)

    def _check_image(self, s: LabelSummary) -> None:
        if s.problem is not None:
            self.problems.add(s.problem)
        elif s.image_size is not None:
            self.channels[s.channels] += 1
            if s.image_size != (s.width, s.height):
                self.problems.add(Problem(s.path, None, "size_mismatch",
                                          f"label is {s.width}x{s.height}, its image {s.image_size[0]}x{s.image_size[1]}",
                                          "counted"))
        elif self.settings.check_images:
            self.problems.add(Problem(s.path, None, "missing_image",
                                      f"no image named {s.name} in {self.files.images_dir}", "counted"))

    # instances -------------------------------------------------------------------------------
    def add_annotation(self, image_name: str | None, ann: dict[str, Any]) -> None:
        cid = ann.get("category_id")
        if image_name is None:
            self.problems.add(Problem(self.files.annotations_source, None, "unknown_image_id",
                                      f"annotation {ann.get('id')} refers to image_id {ann.get('image_id')}, "
                                      "which is not in images"))
            return
        if not isinstance(cid, int) or not 0 <= cid < self.num_classes:
            self.problems.add(Problem(self.files.annotations_source, None, "unknown_category",
                                      f"annotation {ann.get('id')} of {image_name} has category_id {cid!r} "
                                      f"(classes are 0..{self.num_classes - 1})"))
            return
        area = self._area(image_name, ann)
        if area is None:
            return
        self.objects[image_name] += 1
        self.instances[cid] += 1
        self.instance_pixels[cid] += area
        self.size_hist[cid][bisect_right(self.area_edges, area)] += 1
        self.group_hist[cid][bisect_right(self.group_edges, area)] += 1
        self.area_min = area if self.area_min is None else min(self.area_min, area)
        self.area_max = max(self.area_max, area)

    def _area(self, image_name: str, ann: dict[str, Any]) -> int | None:
        """Pixels of the instance's mask, from its RLE (the `area` field is only cross-checked)."""
        seg = ann.get("segmentation")
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            self.problems.add(Problem(self._where(image_name, ann), None, "no_rle", "annotation has no RLE segmentation"))
            return None
        rle = mask_utils.frPyObjects(seg, *seg["size"]) if isinstance(seg["counts"], list) else seg
        area = int(mask_utils.area(rle))
        if area == 0:
            self.problems.add(Problem(self._where(image_name, ann), None, "empty_mask", "the mask has no pixel"))
            return None
        stated = ann.get("area")
        if stated is not None and round(float(stated)) != area:
            self.problems.add(Problem(self._where(image_name, ann), None, "area_mismatch",
                                      f"area field says {stated}, the RLE has {area} px", "RLE area used"))
        return area

    def _where(self, image_name: str, ann: dict[str, Any]) -> str:
        return f"{self.files.annotations_source} ({image_name}, annotation {ann.get('id')})"

    # result ----------------------------------------------------------------------------------
    def check_pairing(self, instance_names: Iterable[str]) -> list[str]:
        """Names of the images the instances cover; reports those on one side only."""
        names = list(instance_names)
        if not self.files.has_instances:
            return names
        for name in sorted(set(names) - self.label_names):
            self.problems.add(Problem(str(self.files.labels_dir / f"{name}.png"), None, "missing_label",
                                      "image listed in the instances has no readable label map", "counted"))
        for name in sorted(self.label_names - set(names)):
            self.problems.add(Problem(str(self.files.labels_dir / f"{name}.png"), None, "missing_instances",
                                      f"label map whose image is not in {self.files.annotations_source}", "counted"))
        return names

    def to_dict(self, instance_names: Sequence[str]) -> dict[str, Any]:
        """The JSON-ready statistics (fields in docs/stats.md)."""
        files, n_images = self.files, len(self.label_names)
        per_image = np.array([self.objects.get(n, 0) for n in instance_names], dtype=np.int64)
        edges = np.linspace(0, 1, self.settings.labeled_fraction_bins + 1).round(6).tolist()
        return {
            "subset": files.name,
            "root": str(files.root),
            "annotations_source": files.annotations_source if files.has_instances else None,
            "num_classes": self.num_classes,
            "class_names": list(files.classes.names),
            "palette": [list(c) for c in files.classes.palette],
            "images": n_images,
            "splits": files.split_sizes(),
            "instances": sum(self.instances),
            "image_sizes": self._image_sizes(),
            "channels": sorted(self.channels) or None,
            "pixels": self._pixels(),
            "labeled_fraction_per_image": {"mean": self.fraction_sum / n_images if n_images else 0.0,
                                           "edges": edges, "images": self.fraction_hist.tolist()},
            "mask_size": self._mask_size(),
            "objects_per_image": _objects_per_image(per_image, self.settings.objects_per_image_edges),
            "classes": self._classes(),
            "problems": self.problems.to_dict(),
        }

    def _pixels(self) -> dict[str, Any]:
        total = int(self.pixels.sum())
        labeled = int(self.pixels[: self.num_classes].sum())
        unlabeled = int(self.pixels[IGNORE_INDEX])
        return {"total": total, "labeled": labeled, "unlabeled": unlabeled, "unknown_ids": total - labeled - unlabeled,
                "labeled_fraction": labeled / total if total else 0.0}

    def _mask_size(self) -> dict[str, Any]:
        s, n = self.settings, sum(self.instances)
        return {"bins": s.mask_size_labels(), "edges_px": self.area_edges, "instances": _column_sums(self.size_hist),
                "groups": dict(zip(s.group_names(), _column_sums(self.group_hist))), "group_edges_px": self.group_edges,
                "min": self.area_min, "max": self.area_max if n else None,
                "mean": sum(self.instance_pixels) / n if n else None}

    def _classes(self) -> list[dict[str, Any]]:
        groups = self.settings.group_names()
        return [{"id": i, "name": name, "pixels": int(self.pixels[i]), "instances": self.instances[i],
                 "instance_pixels": self.instance_pixels[i], "mask_sizes": self.size_hist[i],
                 "size_groups": dict(zip(groups, self.group_hist[i]))}
                for i, name in enumerate(self.files.classes.names)]

    def _image_sizes(self) -> dict[str, Any]:
        if not self.image_sizes:
            return {"min": None, "max": None, "most_common": []}
        widths = [w for w, _ in self.image_sizes]
        heights = [h for _, h in self.image_sizes]
        common = self.image_sizes.most_common(self.settings.top_image_sizes)
        return {"min": [min(widths), min(heights)], "max": [max(widths), max(heights)],
                "distinct": len(self.image_sizes),
                "most_common": [{"width": w, "height": h, "images": n} for (w, h), n in common]}


def _column_sums(rows: list[list[int]]) -> list[int]:
    return [sum(col) for col in zip(*rows)]


def _objects_per_image(counts: np.ndarray, edges: Sequence[int]) -> dict[str, Any]:
    """Summary and histogram of instances per image; bin i holds counts in [edges[i], edges[i+1])."""
    if not counts.size:
        return {"images": 0, "mean": None, "median": None, "max": None, "edges": list(edges), "counts": []}
    bins = np.searchsorted(np.asarray(edges), counts, side="right") - 1
    hist = np.bincount(bins[bins >= 0], minlength=len(edges))
    return {"images": int(counts.size), "mean": float(counts.mean()), "median": float(np.median(counts)),
            "max": int(counts.max()), "without_instances": int((counts == 0).sum()),
            "edges": list(edges), "counts": hist.tolist()}


def compute_subset_stats(
    files: SubsetFiles, settings: StatsSettings, num_workers: int = 0, progress: bool = False
) -> dict[str, Any]:
    """All counts of one subset as a JSON-ready dict (see docs/stats.md for the fields)."""
    counts = SubsetCounts(files, settings)
    for summary in iter_label_summaries(files, settings.check_images, num_workers, progress):
        counts.add_label(summary)
    annotations = files.iter_annotations()
    for name, ann in track(annotations, description=f"{files.name}: instances", disable=not progress):
        counts.add_annotation(name, ann)
    names = counts.check_pairing(files.instance_images.values())
    return counts.to_dict(names)
