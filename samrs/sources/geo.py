"""Your own imagery: GeoTIFF scenes (any GDAL raster, any size, any band count) with object boxes in
GIS vector files (GeoJSON, GeoPackage, shapefile, FlatGeobuf).

- `images`: a folder of rasters, or a glob pattern (`/data/scenes/**/*.tif`).
- `vectors`: one vector file for all images, a folder holding `<image name>.<suffix>` per image, or
  a pattern with `{name}` (`/data/boxes/{name}.gpkg`).
- `class_field`: the attribute naming each feature's class; `classes`: the subset's class list
  (ids in that order), or null: the values found in the files, sorted.

Each feature (a polygon, a rotated rectangle, or the parts of a multi-polygon) is reprojected to the
CRS of every raster it overlaps (a file without CRS is in the rasters' CRS, or in pixels for rasters
without one) and becomes an object of those rasters in pixel coordinates. Problems name the vector
file and the feature's number (1-based) as the line: features outside every raster, features that
are no polygon, unknown classes, boxes cut by the raster's edge, boxes wholly on nodata pixels.

The rasters are windowed: the label job reads every tile on its own (`read_window`), so a scene of
any size is tiled with the memory of one tile. SAM sees 8-bit RGB: `bands` picks the three bands
(default: the raster's red/green/blue colour interpretation, else its first three) and `stretch`
maps 16-bit or float values to 8 bits by per-band percentiles of each scene (samrs.utils.geo.Stretch).
"""

from __future__ import annotations

import glob
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.classes import SubsetClasses
from samrs.geometry import hbox_of, min_area_rect, rasterize_polygon
from samrs.sources.base import Problem, Report, Source, SourceItem, WindowPixels
from samrs.sources.common import ObjectChecker, list_files, unique_items
from samrs.sources.records import ImageRecord, ObjectRecord
from samrs.utils.geo import (
    RASTER_SUFFIXES,
    VECTOR_SUFFIXES,
    RasterInfo,
    Stretch,
    VectorFile,
    raster_info,
    read_valid,
    read_vector_classes,
    read_window,
    rgb_bands,
    to_uint8,
)

_RECORDS_KEPT = 2  # records cached per process: the label job reads a scene once per run of tiles


def _pattern_root(pattern: str) -> Path:
    """The folder above the first wildcard of a glob pattern."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


class GeoSource(Source):
    name = "geo"
    windowed = True

    def __init__(
        self,
        images: str,
        vectors: str,
        class_field: str = "class",
        classes: Sequence[str] | None = None,
        subset: str = "geo",
        bands: Sequence[int] | None = None,
        stretch: Mapping[str, Any] | None = None,
        min_box_area: float = 1.0,
        image_suffixes: Sequence[str] = RASTER_SUFFIXES,
        vector_suffixes: Sequence[str] = VECTOR_SUFFIXES,
    ) -> None:
        self.images, self.vectors = str(images), str(vectors)
        is_pattern = glob.has_magic(self.images)
        self.root = _pattern_root(self.images) if is_pattern else Path(self.images)
        if not is_pattern and not self.root.is_dir():
            raise MissingPathError(f"{self.root}: source.images is neither a folder of rasters nor a glob pattern")
        self.class_field = class_field
        self.bands = None if bands is None else tuple(int(b) for b in bands)
        self.stretch = Stretch(**{k: tuple(v) if isinstance(v, list) else v for k, v in (stretch or {}).items()})
        self.min_box_area = min_box_area
        self.image_suffixes, self.vector_suffixes = tuple(image_suffixes), tuple(vector_suffixes)
        vector_files = self._vector_files()  # a wrong path fails here, before any raster is read
        if classes is None:
            classes = self._class_values(vector_files)
        self.classes = SubsetClasses(subset, tuple(str(c) for c in classes))
        self._infos: dict[str, RasterInfo] = {}
        self._features: dict[str, list] = {}
        self._limits: dict[str, Any] = {}
        self._records: OrderedDict[str, tuple[ImageRecord | None, list[Problem]]] = OrderedDict()

    # ---- files ------------------------------------------------------------------------------

    def _rasters(self) -> dict[str, Path]:
        if glob.has_magic(self.images):
            paths = [Path(p) for p in sorted(glob.glob(self.images, recursive=True)) if Path(p).is_file()]
            found = {p.stem: p for p in paths if p.suffix.lower() in self.image_suffixes}
        else:
            found = list_files(self.root, self.image_suffixes)
        if not found:
            raise MissingPathError(f"{self.images}: no raster ({', '.join(self.image_suffixes)}) found "
                                   f"(source.images: a folder or a glob pattern)")
        return found

    @property
    def _single_vector(self) -> bool:
        return Path(self.vectors).is_file()

    def _vector_of(self, name: str) -> Path | None:
        """The vector file of image `name` (one per image), or None when it has none."""
        if "{name}" in self.vectors:
            path = Path(self.vectors.format(name=name))
            return path if path.is_file() else None
        folder = Path(self.vectors)
        return next((folder / f"{name}{s}" for s in self.vector_suffixes if (folder / f"{name}{s}").is_file()), None)

    def _vector_files(self) -> list[Path]:
        if self._single_vector:
            return [Path(self.vectors)]
        if "{name}" in self.vectors:
            return [Path(p) for p in sorted(glob.glob(self.vectors.replace("{name}", "*")))]
        folder = Path(self.vectors)
        if not folder.is_dir():
            raise MissingPathError(f"{folder}: source.vectors is neither a vector file, a folder of them nor a "
                                   f"pattern with {{name}}")
        return [p for p in sorted(folder.iterdir()) if p.suffix.lower() in self.vector_suffixes]

    def _class_values(self, files: list[Path]) -> list[str]:
        """Every class value of the vector files, sorted (numbers by value; source.classes=null)."""
        values = {v for path in files for v in read_vector_classes(path, self.class_field) if v is not None}
        if not values:
            raise ConfigError(f"{self.vectors}: no feature with a {self.class_field!r} value; set source.class_field "
                              f"to the attribute that names the classes, or give source.classes")
        numbers = all(isinstance(v, (int, float, np.number)) for v in values)
        return [str(v) for v in sorted(values)] if numbers else sorted(str(v) for v in values)

    def info(self, path: str | Path) -> RasterInfo:
        key = str(path)
        if key not in self._infos:
            self._infos[key] = raster_info(path)
        return self._infos[key]

    # ---- listing ----------------------------------------------------------------------------

    def items(self, report: Report) -> list[SourceItem]:
        rasters = {}
        for name, path in self._rasters().items():
            try:
                rasters[name] = self.info(path)
            except OSError as err:
                report(Problem(str(path), None, "unreadable_image", str(err)))
        self.georeferenced = any(info.georef.has_crs for info in rasters.values())
        if self._single_vector:
            items = self._assign_one_file(Path(self.vectors), rasters, report)
        else:
            items = []
            for name, info in rasters.items():
                vector = self._vector_of(name)
                if vector is None:
                    report(Problem(info.path, None, "missing_annotation", f"no vector file for {name} ({self.vectors})"))
                    continue
                try:
                    features = self._features_of(VectorFile(vector, self.class_field), info, report)
                except OSError as err:
                    report(Problem(str(vector), None, "malformed_vector", str(err)))
                    continue
                self._features[name] = features
                items.append(SourceItem(name, Path(info.path), vector))
        return unique_items(items)

    def _assign_one_file(self, path: Path, rasters: dict[str, RasterInfo], report: Report) -> list[SourceItem]:
        vectors = VectorFile(path, self.class_field)
        items = []
        for name, info in rasters.items():
            self._features[name] = self._features_of(vectors, info, report)
            items.append(SourceItem(name, Path(info.path), path))
        for index in vectors.misses((i.georef, i.width, i.height) for i in rasters.values()):
            report(Problem(str(path), index + 1, "out_of_image_box",
                           f"feature {index + 1} ({vectors.classes[index]}) overlaps none of the {len(rasters)} "
                           f"rasters (after reprojection to their CRS)", "dropped"))
        return items

    def _features_of(self, vectors: VectorFile, info: RasterInfo, report: Report) -> list:
        if vectors.crs is not None and not info.georef.has_crs:
            raise BadFileError(f"{info.path} has no CRS but {vectors.path} is in {vectors.crs}: the boxes cannot be "
                               f"placed (give the raster its CRS, or boxes in its pixel coordinates without a CRS)")
        features, not_polygons = vectors.in_pixels(info.georef, info.width, info.height)
        for index in not_polygons:
            report(Problem(str(vectors.path), index + 1, "malformed_vector",
                           f"feature {index + 1} is a {vectors.geometry[index].geom_type}, not a polygon"))
        return features

    def image_size(self, item: SourceItem) -> tuple[int, int]:
        info = self.info(item.image_path)
        return info.width, info.height

    # ---- records ----------------------------------------------------------------------------

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        """The scene's record; a scene read before in this process comes from a small cache, its
        problems reported again."""
        if item.name not in self._records:
            problems: list[Problem] = []
            self._records[item.name] = (self._read(item, problems.append), problems)
            while len(self._records) > _RECORDS_KEPT:
                self._records.popitem(last=False)
        record, problems = self._records[item.name]
        for problem in problems:
            report(problem)
        return record

    def _read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        try:
            info = self.info(item.image_path)
        except OSError as err:
            report(Problem(str(item.image_path), None, "unreadable_image", str(err)))
            return None
        if item.name not in self._features:  # an item listed by another instance of the source
            self._features[item.name] = self._features_of(VectorFile(item.annotation_path, self.class_field),
                                                          info, report)
        checker = ObjectChecker(self.classes, info.width, info.height, item.annotation_path, report,
                                self.min_box_area)
        objects = []
        for feature in self._features[item.name]:
            obj = self._object(feature, checker, info)
            if obj is not None:
                objects.append(obj)
        return ImageRecord(item.name, item.image_path, info.width, info.height, objects, source=self.name,
                           annotation_path=item.annotation_path,
                           extras={"georef": info.georef, "nodata": info.nodata, "bands": info.count,
                                   "dtype": info.dtype})

    def _object(self, feature, checker: ObjectChecker, info: RasterInfo) -> ObjectRecord | None:
        """One feature as an object of the raster: class checked, cut at the raster's edge, dropped
        (reported) when it lies wholly on nodata."""
        line = feature.index + 1
        points = np.asarray(feature.polygon.exterior.coords, dtype=np.float64)[:-1]
        class_id = checker.check(feature.class_name, points if len(points) == 4 else min_area_rect(points), line)
        if class_id is None:
            return None
        obj = checker.place_polygon(feature.class_name, class_id, points, line, extras={"feature": feature.index})
        if obj is not None and self._on_nodata(info, obj.region()):
            checker.report(Problem(str(checker.path), line, "nodata_box",
                                   f"{obj.name} box lies wholly on nodata pixels of {Path(info.path).name}"))
            return None
        return obj

    def _on_nodata(self, info: RasterInfo, region: np.ndarray) -> bool:
        """Whether every pixel of `region` is nodata (never for rasters without a mask)."""
        if not info.has_mask:
            return False
        x0, y0, x1, y1 = hbox_of(region)
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(info.width, int(np.ceil(x1))), min(info.height, int(np.ceil(y1)))
        inside = rasterize_polygon(region - [x0, y0], y1 - y0, x1 - x0)
        return bool(inside.any()) and not (read_valid(info.path, x0, y0, x1 - x0, y1 - y0) & inside).any()

    # ---- pixels -----------------------------------------------------------------------------

    def read_window(self, record: ImageRecord, x: int, y: int, width: int, height: int, fill: int,
                    all_bands: bool) -> WindowPixels:
        info = self.info(record.image_path)
        rgb = rgb_bands(info, self.bands)
        key = str(record.image_path)
        if key not in self._limits:
            self._limits[key] = self.stretch.limits(info, rgb)
        fill = info.nodata if info.nodata is not None and np.isfinite(info.nodata) else fill
        if all_bands:
            bands, valid = read_window(info.path, range(1, info.count + 1), x, y, width, height, fill)
            pixels = bands[:, :, [b - 1 for b in rgb]]
        else:
            bands = None
            pixels, valid = read_window(info.path, rgb, x, y, width, height, fill)
        image = to_uint8(pixels, self._limits[key])
        image[~valid] = 0
        return WindowPixels(np.ascontiguousarray(image), valid, bands)

    def describe(self) -> dict[str, Any]:
        """What meta.json records of the source: bands shown to SAM, the stretch, the class field."""
        return {"images": self.images, "vectors": self.vectors, "class_field": self.class_field,
                "rgb_bands": None if self.bands is None else list(self.bands),
                "stretch": {"percentiles": list(self.stretch.percentiles), "samples": self.stretch.samples,
                            "sample_size": self.stretch.sample_size, "stretch_8bit": self.stretch.stretch_8bit}}
