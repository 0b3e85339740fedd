"""Everything in samrs that knows coordinate reference systems and geotransforms.

Rasters are read with rasterio by windows (never whole: a 50,000 x 50,000 scene costs the memory
of one window), written as tiled, compressed GeoTIFFs with their CRS and transform; vectors are read
with geopandas (pyogrio), reprojected with pyproj and turned into pixel coordinates here, and masks
are vectorised back into CRS coordinates here. The rest of samrs sees pixels, windows and a
`Georef` it passes along without looking inside.

Pixel coordinates follow samrs' convention (docs/formats.md): (0, 0) is the top-left corner of the
top-left pixel, x right, y down: exactly rasterio's pixel space, so `transform @ (x, y)` maps a
pixel corner to CRS coordinates.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.features import shapes
from rasterio.windows import Window

from samrs.errors import ConfigError
from samrs.utils.io import atomic_path

# GDAL's and pyogrio's notes ("Created 16 records", harmless TIFF tag notices) are not a run's news
for _name in ("rasterio", "pyogrio"):
    logging.getLogger(_name).setLevel(logging.WARNING)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".png", ".jpg", ".jpeg")
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb")
# GeoTIFF creation options of every raster samrs writes (tiles of a subset, predicted maps)
GTIFF = {"driver": "GTiff", "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}


def open_raster(path: str | os.PathLike) -> rasterio.DatasetReader:
    """rasterio.open without the not-georeferenced warning; OSError naming the file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except RasterioIOError as err:
            raise OSError(f"{path}: cannot open the raster ({err})") from None


# --- georeferencing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Georef:
    """Where a raster's pixels lie: its CRS (WKT, None for a raster without one) and its affine
    transform (rasterio's a, b, c, d, e, f). Plain values: it pickles to DataLoader workers and goes
    into JSON."""

    crs: str | None
    transform: tuple[float, ...]

    @classmethod
    def of(cls, dataset: rasterio.DatasetReader) -> Georef:
        return cls(dataset.crs.to_wkt() if dataset.crs else None, tuple(dataset.transform)[:6])

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    def shifted(self, x: float, y: float) -> Georef:
        """The georef of a window whose top-left pixel corner is (x, y) here (a tile, a crop)."""
        return Georef(self.crs, tuple(self.affine @ Affine.translation(x, y))[:6])

    @property
    def has_crs(self) -> bool:
        return self.crs is not None

    def crs_name(self) -> str | None:
        """EPSG:xxxx where the CRS has a code, else its WKT; None without CRS."""
        if self.crs is None:
            return None
        epsg = CRS.from_wkt(self.crs).to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs


# --- rasters ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterInfo:
    """A raster's header: size, bands, data type, nodata, colour interpretation, georeferencing."""

    path: str
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    colorinterp: tuple[str, ...]
    georef: Georef
    has_mask: bool  # nodata value, alpha band or internal mask: some pixels may be invalid


def raster_info(path: str | os.PathLike) -> RasterInfo:
    """The header of a raster (no pixel is read); OSError naming the file when it cannot be read."""
    with open_raster(path) as ds:
        flags = ds.mask_flag_enums
        per_dataset = any(rasterio.enums.MaskFlags.all_valid not in f for f in flags)
        return RasterInfo(str(path), ds.width, ds.height, ds.count, ds.dtypes[0], ds.nodata,
                          tuple(c.name for c in ds.colorinterp), Georef.of(ds), per_dataset)


def rgb_bands(info: RasterInfo, bands: Sequence[int] | None = None) -> tuple[int, ...]:
    """The 1-based bands shown as red, green, blue: `bands` as given (checked), else the raster's
    red/green/blue colour interpretation, else its first three (one band: grey, shown three times)."""
    if bands is not None:
        bands = tuple(int(b) for b in bands)
        bad = [b for b in bands if not 1 <= b <= info.count]
        if len(bands) != 3 or bad:
            raise ConfigError(f"{info.path}: source.bands={list(bands)} must name 3 of its bands 1..{info.count}")
        return bands
    names = list(info.colorinterp)
    if all(c in names for c in ("red", "green", "blue")):
        return tuple(names.index(c) + 1 for c in ("red", "green", "blue"))
    return (1, 2, 3) if info.count >= 3 else (1, 1, 1)


def read_window(path: str | os.PathLike, bands: Sequence[int], x: int, y: int, width: int, height: int,
                fill: float = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (height, width, len(bands)) in the raster's dtype, valid (height, width) bool) of the
    window whose top-left pixel is (x, y); pixels beyond the raster are `fill` and invalid. Only
    the window's part of the raster is decoded."""
    with open_raster(path) as ds:
        pixels = np.full((len(bands), height, width), fill, dtype=ds.dtypes[0])
        valid = np.zeros((height, width), bool)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, ds.width), min(y + height, ds.height)
        if x1 > x0 and y1 > y0:
            window = Window(x0, y0, x1 - x0, y1 - y0)
            part = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
            pixels[(slice(None), *part)] = ds.read(list(bands), window=window)
            valid[part] = ds.dataset_mask(window=window) > 0
    return np.ascontiguousarray(pixels.transpose(1, 2, 0)), valid


def read_valid(path: str | os.PathLike, x: int, y: int, width: int, height: int) -> np.ndarray:
    """(height, width) bool: the raster's valid (not nodata) pixels in a window inside it."""
    with open_raster(path) as ds:
        return ds.dataset_mask(window=Window(x, y, width, height)) > 0


def read_raster(path: str | os.PathLike, bands: Sequence[int] | int | None = None) -> np.ndarray:
    """(H, W, N) pixels of a whole (small) raster, a tile of a subset: `bands` 1-based indexes, N
    for the first N, None for all. OSError naming the file when it cannot be decoded."""
    with open_raster(path) as ds:
        if bands is None:
            indexes = list(range(1, ds.count + 1))
        elif isinstance(bands, int):
            indexes = list(range(1, bands + 1))
        else:
            indexes = [int(b) for b in bands]
        if max(indexes) > ds.count or min(indexes) < 1:
            raise OSError(f"{path}: has {ds.count} bands, bands {indexes} were asked for (data.bands)")
        try:
            data = ds.read(indexes)
        except RasterioIOError as err:
            raise OSError(f"{path}: cannot decode the raster ({err})") from None
    return np.ascontiguousarray(data.transpose(1, 2, 0))


@dataclass(frozen=True)
class Stretch:
    """How 16-bit or float bands become the 8-bit RGB SAM sees: per band, the `percentiles` (low,
    high) of the scene's valid pixels map to 0 and 255 (clipped outside). The percentiles are
    estimated from `samples` x `samples` windows of `sample_size` px spread evenly over the scene,
    so the cost does not grow with the scene. 8-bit bands are kept as they are unless `stretch_8bit`."""

    percentiles: tuple[float, float] = (2.0, 98.0)
    samples: int = 8
    sample_size: int = 128
    stretch_8bit: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"source.stretch.percentiles={list(self.percentiles)}: need 0 <= low < high <= 100")

    def limits(self, info: RasterInfo, bands: Sequence[int]) -> list[tuple[float, float]] | None:
        """(low, high) value per band, or None when the bands are 8-bit and kept as they are."""
        if info.dtype == "uint8" and not self.stretch_8bit:
            return None
        side = min(self.sample_size, info.width, info.height)
        xs = np.linspace(0, info.width - side, self.samples).round().astype(int)
        ys = np.linspace(0, info.height - side, self.samples).round().astype(int)
        values: list[np.ndarray] = []
        for y in sorted(set(ys.tolist())):
            for x in sorted(set(xs.tolist())):
                pixels, valid = read_window(info.path, bands, x, y, side, side)
                values.append(pixels[valid])
        sample = np.concatenate(values) if values else np.zeros((0, len(bands)))
        if not len(sample):
            return [(0.0, 1.0)] * len(bands)
        lo, hi = np.percentile(sample.astype(np.float64), self.percentiles, axis=0)
        return [(float(a), float(max(b, a + 1e-6))) for a, b in zip(lo, hi)]


def to_uint8(pixels: np.ndarray, limits: Sequence[tuple[float, float]] | None) -> np.ndarray:
    """(H, W, C) pixels stretched by per-band (low, high) limits to uint8; None: already 8-bit."""
    if limits is None:
        return pixels.astype(np.uint8, copy=False)
    lo = np.array([a for a, _ in limits], np.float32)
    hi = np.array([b for _, b in limits], np.float32)
    scaled = (pixels.astype(np.float32) - lo) / (hi - lo) * 255.0 + 0.5
    return np.clip(scaled, 0, 255).astype(np.uint8)


def write_geotiff(path: str | os.PathLike, array: np.ndarray, georef: Georef | None, nodata: float | None = None,
                  colormap: Sequence[Sequence[int]] | None = None, descriptions: Sequence[str] | None = None,
                  scales: Sequence[float] | None = None, mask: np.ndarray | None = None) -> None:
    """Write (H, W) or (H, W, C) pixels as a tiled, deflate-compressed GeoTIFF, atomically; `colormap`
    (RGB of values 0, 1, ...) for a single-band class map, so GIS programs show it in colour;
    `mask` ((H, W) bool, False on nodata) as the file's internal mask."""
    data = array[:, :, None] if array.ndim == 2 else array
    with atomic_path(path) as tmp:
        with _quiet_writer(tmp, data.shape[0], data.shape[1], data.shape[2], data.dtype, georef, nodata) as dst:
            dst.write(np.ascontiguousarray(data.transpose(2, 0, 1)))
            _describe(dst, colormap, descriptions, scales)
            if mask is not None:
                dst.write_mask(mask.astype(np.uint8) * 255)


class GeoTiffRows:
    """A GeoTIFF written band of rows by band of rows (predicted maps of whole scenes), to a hidden
    temporary name that `close()` renames onto `path`: a file at `path` is always complete."""

    def __init__(self, path: str | os.PathLike, height: int, width: int, count: int, dtype: Any,
                 georef: Georef | None, nodata: float | None = None,
                 colormap: Sequence[Sequence[int]] | None = None, descriptions: Sequence[str] | None = None,
                 scales: Sequence[float] | None = None) -> None:
        self.path = Path(path)
        self._atomic = atomic_path(self.path)
        self.tmp = self._atomic.__enter__()
        self.dst = _quiet_writer(self.tmp, height, width, count, np.dtype(dtype), georef, nodata)
        _describe(self.dst, colormap, descriptions, scales)

    def write(self, top: int, rows: np.ndarray) -> None:
        """Rows (R, W) or (R, W, C) starting at row `top`."""
        data = rows[:, :, None] if rows.ndim == 2 else rows
        window = Window(0, top, data.shape[1], data.shape[0])
        self.dst.write(np.ascontiguousarray(data.transpose(2, 0, 1)), window=window)

    def close(self) -> None:
        self.dst.close()
        self._atomic.__exit__(None, None, None)

    def abort(self) -> None:
        self.dst.close()
        self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _quiet_writer(path: Path, height: int, width: int, count: int, dtype: np.dtype, georef: Georef | None,
                  nodata: float | None) -> rasterio.io.DatasetWriter:
    profile = dict(GTIFF, width=width, height=height, count=count, dtype=dtype, nodata=nodata,
                   BIGTIFF="IF_SAFER")
    if width < 256 or height < 256:  # a tile smaller than one block: stripped, GDAL's default
        profile.update(tiled=False, blockxsize=None, blockysize=None)
        profile = {k: v for k, v in profile.items() if v is not None}
    if np.issubdtype(dtype, np.integer) and dtype.itemsize > 1:
        profile["predictor"] = 2  # horizontal differencing: 16-bit imagery compresses far better
    if georef is not None:
        profile["transform"] = georef.affine
        if georef.crs is not None:
            profile["crs"] = CRS.from_wkt(georef.crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path, "w", **profile)


def _describe(dst: rasterio.io.DatasetWriter, colormap: Sequence[Sequence[int]] | None,
              descriptions: Sequence[str] | None, scales: Sequence[float] | None) -> None:
    if colormap is not None:  # (makes the band's colour interpretation "palette")
        dst.write_colormap(1, {i: tuple(int(v) for v in c) + (255,) for i, c in enumerate(colormap)})
    for band, text in enumerate(descriptions or (), start=1):
        dst.set_band_description(band, str(text))
    if scales is not None:
        dst.scales = tuple(float(s) for s in scales)


# --- vectors ----------------------------------------------------------------------------------


def read_vector_classes(path: str | os.PathLike, class_field: str) -> list[Any]:
    """The values of attribute `class_field` of every feature (geometries are not read)."""
    import pyogrio

    _check_vector_field(path, class_field)
    table = pyogrio.read_dataframe(path, columns=[class_field], read_geometry=False)
    return table[class_field].tolist()


def _check_vector_field(path: str | os.PathLike, class_field: str) -> None:
    import pyogrio

    try:
        fields = list(pyogrio.read_info(path)["fields"])
    except Exception as err:  # pyogrio's DataSourceError and friends: the file is not a vector file
        raise OSError(f"{path}: cannot read the vector file ({err})") from None
    if class_field not in fields:
        raise ConfigError(f"{path}: no attribute {class_field!r} (source.class_field); it has {', '.join(fields)}")


@dataclass
class VectorFeature:
    """One feature of a vector file as a polygon in a raster's pixel coordinates."""

    index: int  # the feature's position in its file (0-based)
    class_name: str
    polygon: shapely.Polygon  # exterior ring only: a box has no holes


class VectorFile:
    """The features of one vector file (any CRS), read once and reprojected per raster CRS."""

    def __init__(self, path: str | os.PathLike, class_field: str) -> None:
        import geopandas as gpd

        self.path = Path(path)
        _check_vector_field(path, class_field)
        frame = gpd.read_file(path, engine="pyogrio", columns=[class_field])
        self.crs = frame.crs
        self.classes = [None if v is None else str(v) for v in frame[class_field].tolist()]
        self.geometry = frame.geometry.values
        self._projected: dict[str | None, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.classes)

    def projected(self, crs: str | None) -> np.ndarray:
        """The geometries in CRS `crs` (WKT; None: the raster has none, the file's coordinates are
        taken as they are)."""
        if crs not in self._projected:
            geometry = self.geometry
            if crs is not None and self.crs is not None:  # (a file without CRS is in the rasters' CRS)
                geometry = geometry.to_crs(crs)
            self._projected[crs] = np.asarray(geometry, dtype=object)
        return self._projected[crs]

    def in_pixels(self, georef: Georef, width: int, height: int) -> tuple[list[VectorFeature], list[int]]:
        """(features overlapping the width x height raster, as pixel polygons; indexes of features
        that are no polygon). Multi-part features give one feature per part."""
        geoms = self.projected(georef.crs)
        inverse = ~georef.affine
        footprint = shapely.box(0, 0, width, height)
        out, not_polygons = [], []
        pixels = shapely.transform(geoms, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
        hits = shapely.intersects(pixels, footprint)
        for index in np.flatnonzero(hits):
            geom = pixels[index]
            parts = [p for p in shapely.get_parts(geom) if isinstance(p, shapely.Polygon)]
            if not parts:
                not_polygons.append(int(index))
            out.extend(VectorFeature(int(index), self.classes[index], shapely.Polygon(p.exterior)) for p in parts)
        return out, not_polygons

    def misses(self, footprints: Iterable[tuple[Georef, int, int]]) -> list[int]:
        """Indexes of the features that overlap none of the rasters (georef, width, height)."""
        hit = np.zeros(len(self), bool)
        for georef, width, height in footprints:
            geoms = self.projected(georef.crs)
            inverse = ~georef.affine
            pixels = shapely.transform(geoms, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
            hit |= shapely.intersects(pixels, shapely.box(0, 0, width, height))
        return np.flatnonzero(~hit).tolist()


def pixels_to_crs(points: np.ndarray, georef: Georef, crs: str) -> np.ndarray:
    """(K, 2) pixel coordinates of a raster -> coordinates in another CRS (x, y order: lon, lat)."""
    from pyproj import Transformer

    x, y = georef.affine @ (points[:, 0], points[:, 1])
    transformer = Transformer.from_crs(CRS.from_wkt(georef.crs), CRS.from_user_input(crs), always_xy=True)
    return np.column_stack(transformer.transform(x, y))


def crs_wkt(crs: str) -> str:
    """WKT of a CRS given any way rasterio takes it (EPSG:32633, a PROJ string, WKT)."""
    return CRS.from_user_input(crs).to_wkt()


def mask_geometry(mask: np.ndarray, georef: Georef) -> shapely.Geometry | None:
    """The pixels of a boolean mask as one (multi)polygon in the georef's coordinates (pixel edges,
    as rasterio.features.shapes traces them); None for an empty mask."""
    if not mask.any():
        return None
    parts = [shapely.geometry.shape(geom) for geom, value in
             shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=georef.affine) if value]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def class_geometries(classes: np.ndarray, georef: Georef, skip: int = 255) -> Iterable[tuple[int, shapely.Geometry]]:
    """(class id, polygon) of every 4-connected region of a class map, in the georef's coordinates."""
    valid = classes != skip
    if not valid.any():
        return
    for geom, value in shapes(classes, mask=valid, connectivity=4, transform=georef.affine):
        yield int(value), shapely.geometry.shape(geom)


def write_vector(path: str | os.PathLike, layers: Mapping[str, tuple[Mapping[str, Sequence[Any]],
                 Sequence[shapely.Geometry], str | None]]) -> None:
    """Write {layer: (attribute columns, geometries, CRS WKT)} to a GeoPackage (or GeoJSON: one
    layer), atomically. Every layer is written, also an empty one (with its columns)."""
    import geopandas as gpd

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.unlink()  # GDAL creates the file itself
        for i, (layer, (columns, geometries, crs)) in enumerate(layers.items()):
            frame = gpd.GeoDataFrame(dict(columns), geometry=list(geometries),
                                     crs=None if crs is None else CRS.from_wkt(crs).to_wkt())
            # GDAL names a GeoJSON's layer after the file it writes (here the temporary one) unless told
            options = {"layer": layer if path.suffix.lower() == ".gpkg" else path.stem}
            frame.to_file(tmp, engine="pyogrio", driver=vector_driver(path), append=i > 0, **options)


def vector_driver(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    drivers = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf",
               ".shp": "ESRI Shapefile"}
    if suffix not in drivers:
        raise ConfigError(f"{path}: unknown vector format {suffix!r}; use one of {', '.join(drivers)}")
    return drivers[suffix]


def pixel_size(georef: Georef) -> float:
    """The side of a pixel in CRS units (geometric mean of the two axes)."""
    a = georef.affine
    return math.sqrt(abs(a.a * a.e - a.b * a.d))
