"""Writes one SAMRS-format subset (DESIGN.md "Output of one subset").

Each image is written as images/, labels/ and color/ PNGs and then a per-image part file
(.samrs_parts/<name>.json) holding its COCO image and annotation entries. The part is written last
and atomically, so its presence means the image is complete: an interrupted run resumes by skipping
the names that have a part, and `finalize` merges the parts into instances.json, meta.json and the
split files. Writers on several processes (DDP ranks) can share one output directory.

`format="geotiff"` (a georeferenced source, output_format=auto) writes images/<name>.tif and
labels/<name>.tif instead, each with its tile's own transform and the CRS (labels: uint8 with
nodata 255 and the subset's palette as colour map; images: an internal mask on nodata), and
instances.gpkg beside instances.json: one polygon per instance, vectorised from its mask, in the
raster CRS. `bands="all"` writes every band of the source in its data type instead of the 8-bit RGB
the labeler saw. Pixels outside `valid` (nodata) are never labeled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
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
FORMATS = ("png", "geotiff")
OUTPUT_BANDS = ("rgb", "all")


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


def on_valid(inst: InstanceMask, valid: np.ndarray) -> InstanceMask:
    """The instance without its pixels outside `valid` (nodata, or beyond the image)."""
    h, w = inst.mask.shape
    kept = inst.mask & valid[inst.y0 : inst.y0 + h, inst.x0 : inst.x0 + w]
    return inst if kept.sum() == inst.mask.sum() else replace(inst, mask=kept)


def band_sums(pixels: np.ndarray, valid: np.ndarray | None) -> dict[str, Any]:
    """Per-band sum, sum of squares and count of the valid pixels of an (H, W, C) image."""
    values = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64)
    if valid is not None:
        values = values[valid.ravel()]
    return {"sum": values.sum(axis=0).tolist(), "sumsq": np.square(values).sum(axis=0).tolist(),
            "count": int(len(values))}


class SubsetWriter:
    """Writes images, label maps, colour renderings and COCO parts of one subset."""

    def __init__(
        self,
        output_dir: str | Path,
        classes: SubsetClasses,
        overlap: str = "smaller_on_top",
        write_color: bool = True,
        val_fraction: float = 0.05,
        format: str = "png",
        bands: str = "rgb",
    ) -> None:
        if format not in FORMATS:
            raise ValueError(f"output_format={format!r}: choose auto or one of {', '.join(FORMATS)}")
        if bands not in OUTPUT_BANDS:
            raise ValueError(f"output.bands={bands!r}: choose one of {', '.join(OUTPUT_BANDS)}")
        self.root = Path(output_dir)
        self.classes = classes
        self.overlap = overlap
        self.write_color = write_color
        self.val_fraction = val_fraction
        self.format, self.bands = format, bands
        self.suffix = ".tif" if format == "geotiff" else ".png"
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
        georef: Any = None,
        valid: np.ndarray | None = None,
        bands: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write one image and its instances; returns the label map. The part file goes last.

        `rboxes` and `annotation_extras` (fields added to each COCO annotation) follow `instances`.
        `georef` (samrs.utils.geo.Georef of this image), `valid` ((H, W) bool, False on nodata:
        never labeled) and `bands` ((H, W, N) every band, written with bands="all") come from a
        windowed source.
        """
        height, width = image.shape[:2]
        if valid is not None:
            instances = [on_valid(i, valid) for i in instances]
        label = paint_label_map(instances, height, width, self.overlap)
        pixels = bands if bands is not None and self.bands == "all" else image
        image_file = f"images/{name}{self.suffix}"
        if self.format == "geotiff":
            from samrs.utils.geo import write_geotiff

            mask = valid if valid is not None and not valid.all() else None
            write_geotiff(self.root / image_file, pixels, georef, mask=mask)
            write_geotiff(self.root / "labels" / f"{name}.tif", label, georef, nodata=255,
                          colormap=self.classes.palette)
        else:
            write_png(self.root / image_file, pixels)
            write_png(self.root / "labels" / f"{name}.png", label)
        if self.write_color:
            write_png(self.root / "color" / f"{name}.png", colorize(label, self.classes.palette))
        rboxes = rboxes if rboxes is not None else [None] * len(instances)
        extras = annotation_extras if annotation_extras is not None else [{}] * len(instances)
        kept = [k for k, i in enumerate(instances) if i.mask.any()]
        geo = {} if georef is None else {"crs": georef.crs_name(), "transform": list(georef.transform)}
        part = {
            "image": {"file_name": image_file, "width": width, "height": height, **geo, **(image_extras or {})},
            "annotations": [{**annotation_entry(instances[k], height, width, rboxes[k]), **extras[k]} for k in kept],
        }
        if self.format == "geotiff" and georef is not None:
            part["crs_wkt"] = georef.crs
            part["geometries"] = [_instance_wkb(instances[k], georef) for k in kept]
        if pixels is bands:
            part["band_stats"] = band_sums(bands, valid)
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
        vectors = _InstanceVectors(self.classes.names)
        stats = _BandStats()
        for image_id, name in enumerate(names, start=1):
            part = json.loads((self.parts / f"{name}.json").read_text())
            source = part["image"].get("source_image", name)
            known = source_splits is not None and source in source_splits
            official[name] = source_splits[source] if known else part["image"].get("source_split")
            images.append({"id": image_id, **part["image"], **({"source_split": official[name]} if known else {})})
            empty += not part["annotations"]
            stats.add(part.get("band_stats"))
            for ann, geometry in zip(part["annotations"], part.get("geometries") or [None] * len(part["annotations"])):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
                per_class[ann["category_id"]] += 1
                cut += ann.get("outside", 0) > 0
                outside += ann.get("outside", 0)
                vectors.add(annotations[-1], part, geometry)
        categories = [{"id": i, "name": n} for i, n in enumerate(self.classes.names)]
        write_json(self.root / "instances.json", {"images": images, "annotations": annotations,
                                                  "categories": categories}, indent=None)
        if self.format == "geotiff":
            vectors.write(self.root / "instances.gpkg")
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
            "output_format": self.format,
            "output_bands": self.bands,
            **stats.meta(),
            **(meta or {}),
            "counts": counts,
            # images of the source's test split: in test.txt, never in train.txt or val.txt (samrs.train checks)
            "test_names": splits["test"],
        }
        write_json(self.root / "meta.json", full_meta)
        return full_meta


def _instance_wkb(inst: InstanceMask, georef: Any) -> str | None:
    """The instance's mask as a (multi)polygon in the CRS (hex WKB), traced from its crop."""
    from samrs.utils.geo import mask_geometry

    geometry = mask_geometry(inst.mask, georef.shifted(inst.x0, inst.y0))
    return None if geometry is None else geometry.wkb_hex


class _InstanceVectors:
    """The polygons of every instance, gathered from the parts into instances.gpkg: one layer,
    `instances`, in the rasters' CRS (rasters in several CRSs: one layer per CRS, instances_<n>)."""

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.layers: dict[str | None, tuple[dict[str, list], list]] = {}

    def add(self, ann: dict[str, Any], part: dict[str, Any], geometry: str | None) -> None:
        if geometry is None:
            return
        columns, geometries = self.layers.setdefault(part.get("crs_wkt"), ({
            "annotation_id": [], "image": [], "source_image": [], "class_id": [], "class_name": [], "score": [],
            "area_px": []}, []))
        image = part["image"]
        for key, value in (("annotation_id", ann["id"]), ("image", Path(image["file_name"]).stem),
                           ("source_image", image.get("source_image", Path(image["file_name"]).stem)),
                           ("class_id", ann["category_id"]), ("class_name", self.class_names[ann["category_id"]]),
                           ("score", ann.get("score")), ("area_px", ann["area"])):
            columns[key].append(value)
        geometries.append(geometry)

    def write(self, path: Path) -> None:
        import shapely

        from samrs.utils.geo import write_vector

        layers = self.layers or {None: ({"annotation_id": [], "class_id": [], "class_name": []}, [])}
        names = ["instances"] if len(layers) == 1 else [f"instances_{k}" for k in range(1, len(layers) + 1)]
        write_vector(path, {name: (columns, shapely.from_wkb(geometries) if geometries else [], crs)
                            for name, (crs, (columns, geometries)) in zip(names, layers.items())})


class _BandStats:
    """Per-band mean and standard deviation of the images written with every band (meta.json
    band_stats: data.mean / data.std of training on them)."""

    def __init__(self) -> None:
        self.sums: np.ndarray | None = None
        self.squares: np.ndarray | None = None
        self.count = 0

    def add(self, stats: dict[str, Any] | None) -> None:
        if not stats:
            return
        sums, squares = np.asarray(stats["sum"]), np.asarray(stats["sumsq"])
        self.sums = sums if self.sums is None else self.sums + sums
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += stats["count"]

    def meta(self) -> dict[str, Any]:
        if self.sums is None or not self.count:
            return {}
        mean = self.sums / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        return {"band_stats": {"mean": [round(float(v), 4) for v in mean], "std": [round(float(v), 4) for v in std],
                               "pixels": self.count}}
