"""Generated georeferenced scenes: 16-bit multispectral GeoTIFFs with their boxes in a GIS vector file.

`write_geotiff_scenes` writes `images/<name>.tif` (4 bands by default: blue, green, red, near
infrared, uint16, in a projected CRS, UTM zone 33N by default, with a nodata corner cut off as in an
off-nadir scene footprint) and one `boxes.geojson` with every scene's rotated boxes in another CRS
(EPSG:4326) and a `class` attribute: what `source=geo` reads. Scenes are drawn block by block
(samrs.scenes.generate, `block` px at a time) and written by windows, so a 50,000 px scene is
generated with the memory of one block. Each scene also lists one box lying wholly on nodata,
which the label job reports and skips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from samrs.errors import ConfigError
from samrs.scenes.generate import generate_scene
from samrs.utils.geo import Georef, GeoTiffRows, crs_wkt, pixels_to_crs, write_vector

BAND_NAMES = ("blue", "green", "red", "nir", "swir1", "swir2", "coastal", "red-edge")
NODATA = 0
VECTOR_CRS = "EPSG:4326"


def scene_bands(rgb: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(H, W, count) uint16 digital numbers (about 100-3300, 12-bit-like) from an 8-bit RGB block:
    blue, green, red, then near infrared (bright on the greener pixels) and further made-up bands."""
    r, g, b = (rgb[:, :, k].astype(np.float32) for k in range(3))
    nir = 0.25 * r + 0.95 * g - 0.2 * b + 40
    planes = [b, g, r, nir] + [0.5 * (r + nir) + 10 * k for k in range(max(0, count - 4))]
    dn = np.stack(planes[:count], axis=2) * 12.0 + 100 + rng.normal(0, 6, (*rgb.shape[:2], 1))
    return np.clip(dn, 1, 65535).astype(np.uint16)


def nodata_corner(top: int, left: int, rows: int, cols: int, size: tuple[int, int]) -> np.ndarray:
    """(rows, cols) bool of a block at (top, left): True where the scene is nodata, a triangle
    cut off its top-left corner (x + y < 15% of the scene's sides)."""
    height, width = size
    ys = np.arange(top, top + rows)[:, None] / height
    xs = np.arange(left, left + cols)[None, :] / width
    return xs + ys < 0.15


def write_geotiff_scenes(
    out: str | Path,
    count: int = 4,
    size: int | Sequence[int] = 512,
    seed: int = 0,
    num_objects: int | Sequence[int] = (4, 10),
    bands: int = 4,
    crs: str = "EPSG:32633",
    gsd: float = 0.5,
    block: int = 1024,
    subset: str = "sota",
    wrap: Callable[[Iterable[int]], Iterable[int]] = lambda scenes: scenes,
) -> Path:
    """Write `count` scenes of `size` (side, or [height, width]) px under `out`; returns `out`.

    Scene i lies at its own place in `crs` (pixels of `gsd` metres); its blocks of `block` px are
    generated scenes (samrs.scenes.generate, `num_objects` objects per block, seed from `seed`, i
    and the block). The boxes (each object's rotated box) go to `out/boxes.geojson` in EPSG:4326.
    """
    if not 1 <= bands <= len(BAND_NAMES):
        raise ConfigError(f"--bands {bands}: 1 to {len(BAND_NAMES)} bands")
    out = Path(out)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    classes, geometries, scene_names = [], [], []
    wkt = crs_wkt(crs)
    for i in wrap(range(count)):
        name = f"scene_{i:03d}"
        # scenes side by side, 10% apart, near 15 degrees east (UTM 33N's central meridian)
        georef = Georef(wkt, (gsd, 0.0, 450000.0 + i * width * gsd * 1.1, 0.0, -gsd, 5_000_000.0))
        boxes = _write_scene(out / "images" / f"{name}.tif", georef, (height, width), bands, block, subset,
                             num_objects, seed * 1_000_003 + i)
        for class_name, corners in boxes:
            classes.append(class_name)
            geometries.append(pixels_to_crs(corners, georef, VECTOR_CRS))
            scene_names.append(name)
    import shapely

    write_vector(out / "boxes.geojson", {"boxes": ({"class": classes, "scene": scene_names},
                                                   [shapely.Polygon(g) for g in geometries], crs_wkt(VECTOR_CRS))})
    return out


def _write_scene(path: Path, georef: Georef, size: tuple[int, int], bands: int, block: int, subset: str,
                 num_objects: int | Sequence[int], seed: int) -> list[tuple[str, np.ndarray]]:
    """One scene, written a band of blocks at a time; returns its boxes (class, pixel corners)."""
    height, width = size
    writer = GeoTiffRows(path, height, width, bands, np.uint16, georef, nodata=NODATA,
                         descriptions=BAND_NAMES[:bands])
    boxes: list[tuple[str, np.ndarray]] = []
    try:
        from rasterio.enums import ColorInterp

        names = {"blue": ColorInterp.blue, "green": ColorInterp.green, "red": ColorInterp.red}
        writer.dst.colorinterp = [names.get(n, ColorInterp.undefined) for n in BAND_NAMES[:bands]]
        rng = np.random.default_rng(seed)
        for top in range(0, height, block):
            rows = min(block, height - top)
            strip = np.zeros((rows, width, bands), np.uint16)
            for left in range(0, width, block):
                cols = min(block, width - left)
                scene = generate_scene(subset, (rows, cols), num_objects, seed=int(rng.integers(2**31)))
                pixels = scene_bands(scene.image, bands, rng)
                pixels[nodata_corner(top, left, rows, cols, size)] = NODATA
                strip[:, left:left + cols] = pixels
                boxes += [(o.class_name, o.corners + [left, top]) for o in scene.objects]
            writer.write(top, strip)
        boxes.append(_nodata_box(subset, size))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return boxes


def _nodata_box(subset: str, size: tuple[int, int]) -> tuple[str, np.ndarray]:
    """A small-vehicle-sized box well inside the nodata corner."""
    from samrs.classes import subset_classes

    side = 0.02 * min(size)
    x = y = 0.03 * min(size)
    corners = np.array([[x, y], [x + side, y], [x + side, y + side / 2], [x, y + side / 2]])
    return subset_classes(subset).names[0], corners


def write_geo_subset(root: str | Path, count: int = 4, size: int | Sequence[int] = 384, seed: int = 0,
                     num_objects: int | Sequence[int] = (6, 12), bands: int = 4, tile: int = 128, gap: int = 32,
                     subset: str = "sota", val_fraction: float = 0.2) -> Path:
    """Generated GeoTIFF scenes (in `<root>_scenes`) labeled by polygon_fill into a subset at `root`,
    every band kept: the data of the geo_debug experiment. The label job runs on one CPU process;
    a second call with the same settings finds the subset and returns."""
    import functools
    import json

    import lightning as L

    from samrs.classes import subset_classes
    from samrs.labeling.fill import PolygonFillLabeler
    from samrs.labeling.job import run_labeling
    from samrs.sources.geo import GeoSource
    from samrs.sources.tiling import Tiling
    from samrs.utils.io import write_json

    root = Path(root)
    params = {"count": count, "size": size if isinstance(size, int) else list(size), "seed": seed,
              "num_objects": num_objects if isinstance(num_objects, int) else list(num_objects), "bands": bands,
              "tile": tile, "gap": gap, "subset": subset, "val_fraction": val_fraction}
    marker = root / ".generated.json"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return root
    scenes = write_geotiff_scenes(root.parent / f"{root.name}_scenes", count, size, seed, num_objects, bands=bands,
                                  block=max(tile * 2, 256), subset=subset)
    source = GeoSource(scenes / "images", scenes / "boxes.geojson", classes=subset_classes(subset).names,
                       subset=subset)
    trainer = functools.partial(L.Trainer, accelerator="cpu", devices=1, enable_model_summary=False,
                                enable_checkpointing=False)
    run_labeling(source, PolygonFillLabeler(), root, tiling=Tiling(size=tile, gap=gap, min_visible=0.5),
                 val_fraction=val_fraction, progress=False, make_trainer=trainer, output_format="geotiff",
                 output_bands="all")
    write_json(marker, params)
    return root
