"""Generated fine-tuning datasets, written where the data config's layouts say the real files are.

- `write_potsdam_like`: ISPRS Potsdam-like land cover (impervious ground, buildings, low
  vegetation, trees, cars, clutter) as RGB TIFFs with ISPRS colour-coded labels whose class borders
  are painted black, as in Potsdam's `5_Labels_all_noBoundary`.
- `write_isaid_like`: DOTA-like scenes (samrs.scenes with iSAID's 15 classes) with iSAID's class
  colour masks (`*_instance_color_RGB.png`).

Both take the datamodule's per-split layouts ({split: SubsetLayout}) and write each split's images
and labels to `layout.image_path` / `layout.label_path`, so the debug experiments and the tests read
generated files through exactly the code that reads the real datasets. A second call with the same
settings finds the files written and returns.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from samrs.classes import ISAID, POTSDAM_COLORS, POTSDAM_WITH_CLUTTER
from samrs.data.layout import SubsetLayout
from samrs.errors import ConfigError
from samrs.geometry import fill_polygon, rotated_rect
from samrs.scenes.folder import claim_folder, mark_complete
from samrs.scenes.formats import isaid_masks, save_image
from samrs.scenes.generate import generate_scene
# Mean colour of each land-cover class in the generated images (POTSDAM_WITH_CLUTTER order).
LANDCOVER_RGB = {"impervious-surface": (150, 148, 145), "building": (170, 92, 70), "low-vegetation": (120, 150, 85),
                 "tree": (45, 85, 45), "car": (60, 60, 200), "clutter": (130, 110, 60)}


def _instead(dataset: str) -> str:
    return (f"To train on the data there, pass data={dataset} data.root=<that folder> (or data.generate=null); "
            "to generate, point data.root at an empty folder.")


def _split_names(layouts: Mapping[str, SubsetLayout], split: str) -> list[str]:
    listing = layouts[split].split_files[split]
    if listing is None or isinstance(listing, str):
        raise ConfigError(f"generated Potsdam-like data needs data.splits.{split}.names as a list of scene names, "
                          f"got {listing!r}")
    return [str(n) for n in listing]


def landcover_scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, label (H, W) uint8 ids in POTSDAM_WITH_CLUTTER order) of one scene."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), np.uint8)  # impervious ground
    cells = rng.random((5, 5)).astype(np.float32)
    label[cv2.resize(cells, (size, size), interpolation=cv2.INTER_CUBIC) > 0.6] = 2  # low vegetation
    for cls, count, length, aspect in ((1, (2, 5), (0.12, 0.3), (0.5, 1.0)), (3, (3, 8), (0.05, 0.12), (0.8, 1.0)),
                                        (4, (4, 10), (0.04, 0.06), (0.4, 0.5)), (5, (1, 3), (0.03, 0.08), (0.3, 1.0))):
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            side = rng.uniform(*length) * size
            cx, cy = rng.uniform(0, size, 2)
            fill_polygon(label, rotated_rect(cx, cy, side, side * rng.uniform(*aspect), rng.uniform(0, np.pi)), cls)
    base = np.array([LANDCOVER_RGB[n] for n in POTSDAM_WITH_CLUTTER], np.float32)
    image = base[label] + rng.normal(0, 8, (size, size, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


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
    """One `size` x `size` scene per listed name of every split (scene k of the sorted names uses
    seed `seed * 1_000_003 + k`)."""
    root = Path(root)
    names = sorted({n for split in layouts for n in _split_names(layouts, split)})
    params = {"kind": "potsdam", "names": names, "size": size, "seed": seed, "boundary": boundary}
    if claim_folder(root, params, _instead("potsdam")):
        return root
    for split, layout in layouts.items():
        for name in _split_names(layouts, split):
            image, label = landcover_scene(size, seed * 1_000_003 + names.index(name))
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
    if claim_folder(root, params, _instead("isaid")):
        return root
    index = 0
    for split, count in counts.items():
        layout = layouts[split]
        listing = layout.split_files[split]
        for _ in range(count):
            name = f"P{index:04d}"
            if isinstance(listing, str) and not fnmatchcase(name, listing):
                raise ConfigError(f"generated iSAID-like scene {name} does not match "
                                  f"data.splits.{split}.names={listing!r}")
            scene = generate_scene("sota", size, num_objects, seed=seed * 1_000_003 + index, classes=ISAID, name=name)
            save_image(layout.image_path(root, name), scene.image)
            save_image(layout.label_path(root, name), isaid_masks(scene)[1])
            index += 1
    mark_complete(root, params)
    return root
