"""Generated fine-tuning datasets, written where the data config's layouts say the real files are.

- `write_potsdam_like`: ISPRS Potsdam-like land cover (impervious ground, buildings, low
  vegetation, trees, cars, clutter) as RGB TIFFs with ISPRS colour-coded labels whose class borders
  are painted black, as in Potsdam's `5_Labels_all_noBoundary`.
- `write_vaihingen_like`: the same land cover as ISPRS Vaihingen's IRRG TIFFs (near infrared,
  red, green: vegetation bright in the first band), in scenes that are not square, with the
  ISPRS colour labels and black borders of its eroded (`_noBoundary`) ground truth.
- `write_isaid_like`: DOTA-like scenes (samrs.scenes with iSAID's 15 classes) with iSAID's class
  colour masks (`*_instance_color_RGB.png`).
- `write_loveda_like`: LoveDA-like land cover (background, building, road, water, barren, forest,
  agricultural) as RGB PNGs with single-channel masks of values 1-7, and 0 on no-data strips
  (black in the image), in LoveDA's `<Split>/<Urban|Rural>/{images_png,masks_png}` folders.

Both take the datamodule's per-split layouts ({split: SubsetLayout}) and write each split's images
and labels to `layout.image_path` / `layout.label_path`, so the debug experiments and the tests read
generated files through exactly the code that reads the real datasets. A second call with the same
settings finds the files written and returns.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from samrs.classes import ISAID, LOVEDA, POTSDAM_COLORS, POTSDAM_WITH_CLUTTER
from samrs.data.layout import SubsetLayout
from samrs.errors import ConfigError
from samrs.geometry import fill_polygon, rotated_rect
from samrs.scenes.folder import claim_folder, mark_complete
from samrs.scenes.formats import isaid_masks, save_image
from samrs.scenes.generate import generate_scene
# Mean colour of each land-cover class in the generated images (POTSDAM_WITH_CLUTTER order).
LANDCOVER_RGB = {"impervious-surface": (150, 148, 145), "building": (170, 92, 70), "low-vegetation": (120, 150, 85),
                 "tree": (45, 85, 45), "car": (60, 60, 200), "clutter": (130, 110, 60)}
# ... as (near infrared, red, green), Vaihingen's bands: vegetation reflects the infrared strongly.
LANDCOVER_IRRG = {"impervious-surface": (120, 115, 118), "building": (150, 120, 105), "low-vegetation": (190, 90, 110),
                  "tree": (150, 50, 65), "car": (70, 60, 160), "clutter": (110, 100, 80)}
# Mean RGB of each LoveDA class in the generated images (LOVEDA order).
LOVEDA_RGB = {"background": (120, 118, 110), "building": (175, 170, 165), "road": (140, 140, 135),
              "water": (40, 60, 90), "barren": (165, 150, 120), "forest": (40, 75, 45), "agricultural": (105, 140, 80)}


def _instead(dataset: str) -> str:
    return (f"To train on the data there, pass data={dataset} data.root=<that folder> (or data.generate=null); "
            "to generate, point data.root at an empty folder.")


def _split_names(layouts: Mapping[str, SubsetLayout], split: str) -> list[str]:
    listing = layouts[split].split_files[split]
    if listing is None or isinstance(listing, str):
        raise ConfigError(f"generated ISPRS-like data needs data.splits.{split}.names as a list of scene names, "
                          f"got {listing!r}")
    return [str(n) for n in listing]


def _shape(size: int | Sequence[int]) -> tuple[int, int]:
    """(height, width) of a scene size given as one side or as [height, width]."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _painted(label: np.ndarray, colors: Mapping[str, Sequence[int]], names: Sequence[str],
             rng: np.random.Generator) -> np.ndarray:
    """An image of `label`'s classes in their mean colours, with pixel noise."""
    base = np.array([colors[n] for n in names], np.float32)
    image = base[label] + rng.normal(0, 8, (*label.shape, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int = 5) -> np.ndarray:
    """Smooth noise in [0, 1) over `shape` (bicubic from a cells x cells grid): region masks."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _paint_rects(label: np.ndarray, rng: np.random.Generator, cls: int, count: Sequence[int],
                 length: Sequence[float], aspect: Sequence[float]) -> None:
    """Paint a random number of rotated rectangles of class `cls` (sides relative to the shorter side)."""
    height, width = label.shape
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        side = rng.uniform(*length) * min(height, width)
        cx, cy = rng.uniform(0, (width, height))
        fill_polygon(label, rotated_rect(cx, cy, side, side * rng.uniform(*aspect), rng.uniform(0, np.pi)), cls)


def landcover_scene(size: int | Sequence[int], seed: int,
                    colors: Mapping[str, Sequence[int]] = LANDCOVER_RGB) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, label (H, W) uint8 ids in POTSDAM_WITH_CLUTTER order) of one ISPRS-like
    scene of `size` (a side, or [height, width]); `colors`: the mean colour of each class."""
    rng = np.random.default_rng(seed)
    shape = _shape(size)
    label = np.zeros(shape, np.uint8)  # impervious ground
    label[_smooth(rng, shape) > 0.6] = 2  # low vegetation
    for cls, count, length, aspect in ((1, (2, 5), (0.12, 0.3), (0.5, 1.0)), (3, (3, 8), (0.05, 0.12), (0.8, 1.0)),
                                        (4, (4, 10), (0.04, 0.06), (0.4, 0.5)), (5, (1, 3), (0.03, 0.08), (0.3, 1.0))):
        _paint_rects(label, rng, cls, count, length, aspect)
    return _painted(label, colors, POTSDAM_WITH_CLUTTER, rng), label


def loveda_scene(size: int, seed: int, urban: bool) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8 RGB, mask (H, W) uint8 LoveDA values: 1-7 the LOVEDA classes, 0 no-data)
    of one scene; urban scenes hold more buildings and roads, rural ones more fields. Half of the
    scenes have a no-data strip (black image, mask 0) along their right or bottom edge."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    ids = {n: i for i, n in enumerate(LOVEDA)}
    label = np.full(shape, ids["background" if urban else "agricultural"], np.uint8)
    for name, above in (("forest", 0.65), ("barren", 0.75), ("water", 0.8)):
        label[_smooth(rng, shape, 4) > above] = ids[name]
    for _ in range(int(rng.integers(2, 5) if urban else rng.integers(1, 3))):
        (x0, y0), (x1, y1) = rng.uniform(0, size, (2, 2))
        cv2.line(label, (int(x0), 0), (int(x1), size - 1), ids["road"], max(2, size // 40))
        if rng.random() < 0.5:
            cv2.line(label, (0, int(y0)), (size - 1, int(y1)), ids["road"], max(2, size // 40))
    _paint_rects(label, rng, ids["building"], (8, 16) if urban else (1, 4), (0.04, 0.1), (0.5, 1.0))
    image = _painted(label, LOVEDA_RGB, LOVEDA, rng)
    mask = label + 1
    if rng.random() < 0.5:
        strip = (slice(None), slice(size - size // 6, None)) if rng.random() < 0.5 else slice(size - size // 6, None)
        mask[strip] = 0
        image[strip] = 0
    return image, mask


def potsdam_colors(label: np.ndarray, boundary: int) -> np.ndarray:
    """ISPRS colour coding of `label`, with pixels within `boundary` px of another class black."""
    palette = np.array([POTSDAM_COLORS[n] for n in POTSDAM_WITH_CLUTTER], np.uint8)
    out = palette[label]
    if boundary > 0:
        kernel = np.ones((2 * boundary + 1, 2 * boundary + 1), np.uint8)
        edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
        out[edge] = 0
    return out


def write_potsdam_like(root: str | Path, layouts: Mapping[str, SubsetLayout], size: int = 256, seed: int = 0,
                       boundary: int = 1) -> Path:
    """One `size` x `size` RGB scene per listed name of every split (scene k of the sorted names uses
    seed `seed * 1_000_003 + k`)."""
    return _write_isprs_like(root, layouts, "potsdam", size, seed, boundary, LANDCOVER_RGB)


def write_vaihingen_like(root: str | Path, layouts: Mapping[str, SubsetLayout], size: Sequence[int] = (200, 150),
                         seed: int = 0, boundary: int = 1) -> Path:
    """One IRRG scene of `size` ([height, width]) per listed name of every split (seeds as
    write_potsdam_like)."""
    return _write_isprs_like(root, layouts, "vaihingen", list(size), seed, boundary, LANDCOVER_IRRG)


def _write_isprs_like(root: str | Path, layouts: Mapping[str, SubsetLayout], kind: str, size: int | list[int],
                      seed: int, boundary: int, colors: Mapping[str, Sequence[int]]) -> Path:
    root = Path(root)
    names = sorted({n for split in layouts for n in _split_names(layouts, split)})
    params = {"kind": kind, "names": names, "size": size, "seed": seed, "boundary": boundary}
    if claim_folder(root, params, _instead(kind)):
        return root
    for split, layout in layouts.items():
        for name in _split_names(layouts, split):
            image, label = landcover_scene(size, seed * 1_000_003 + names.index(name), colors)
            save_image(layout.image_path(root, name), image)
            save_image(layout.label_path(root, name), potsdam_colors(label, boundary))
    mark_complete(root, params)
    return root


def write_isaid_like(root: str | Path, layouts: Mapping[str, SubsetLayout], counts: Mapping[str, int],
                     size: int | Sequence[int] = 256, seed: int = 0,
                     num_objects: Sequence[int] = (6, 14)) -> Path:
    """`counts[split]` scenes per split named P0000, P0001, ... across the splits (each name must
    match the split's listing when that is a pattern)."""
    root = Path(root)
    params = {"kind": "isaid", "counts": dict(counts), "size": size if isinstance(size, int) else list(size),
              "seed": seed, "num_objects": list(num_objects)}

    def write(layout: SubsetLayout, split: str, k: int, index: int) -> None:
        name, listing = f"P{index:04d}", layout.split_files[split]
        if isinstance(listing, str) and not fnmatchcase(name, listing):
            raise ConfigError(f"generated iSAID-like scene {name} does not match data.splits.{split}.names={listing!r}")
        scene = generate_scene("sota", size, num_objects, seed=seed * 1_000_003 + index, classes=ISAID, name=name)
        save_image(layout.image_path(root, name), scene.image)
        save_image(layout.label_path(root, name), isaid_masks(scene)[1])

    return _write_counted(root, layouts, counts, params, write)


def write_loveda_like(root: str | Path, layouts: Mapping[str, SubsetLayout], counts: Mapping[str, int],
                      size: int = 128, seed: int = 0) -> Path:
    """`counts[split]` scenes per split, dealt in turn to the split's patterns (LoveDA's
    `Train/Urban/*`, `Train/Rural/*`) and named by one running number across the splits, as LoveDA
    numbers its images; a pattern's folder containing "Urban" makes urban scenes. Scene k uses seed
    `seed * 1_000_003 + k`."""
    root = Path(root)
    params = {"kind": "loveda", "counts": dict(counts), "size": size, "seed": seed}

    def write(layout: SubsetLayout, split: str, k: int, index: int) -> None:
        listing = layout.split_files[split]
        patterns = [listing] if isinstance(listing, str) else list(listing or [])
        if not patterns or not all(isinstance(p, str) and "*" in p for p in patterns):
            raise ConfigError(f"generated LoveDA-like data needs data.splits.{split}.names as folder patterns "
                             f"(Train/Urban/*), got {listing!r}")
        folder, _, pattern = patterns[k % len(patterns)].rpartition("/")
        name = f"{folder}/{index}" if folder else str(index)
        if not fnmatchcase(str(index), pattern):
            raise ConfigError(f"generated LoveDA-like scene {name} does not match data.splits.{split}.names")
        image, mask = loveda_scene(size, seed * 1_000_003 + index, urban="urban" in folder.lower())
        save_image(layout.image_path(root, name), image)
        save_image(layout.label_path(root, name), mask)

    return _write_counted(root, layouts, counts, params, write)


def _write_counted(root: Path, layouts: Mapping[str, SubsetLayout], counts: Mapping[str, int], params: dict,
                   write: Callable[[SubsetLayout, str, int, int], None]) -> Path:
    """Unless `params` were written already: `counts[split]` scenes per split through
    `write(layout, split, k, index)` (the k-th scene of the split, `index` running across the splits)."""
    if claim_folder(root, params, _instead(params["kind"])):
        return root
    index = 0
    for split, count in counts.items():
        for k in range(count):
            write(layouts[split], split, k, index)
            index += 1
    mark_complete(root, params)
    return root
