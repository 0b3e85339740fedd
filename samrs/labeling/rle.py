"""COCO RLE of a mask crop without building the full-size mask.

In COCO's column-major order the columns x0 .. x0+w-1 of the image are one contiguous stretch, so
the RLE of the full mask is the RLE of that full-height strip shifted by x0 * H zeros.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def crop_to_rle(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """Compressed COCO RLE ({'size': [H, W], 'counts': str}) of `crop` placed at (x0, y0)."""
    h, w = crop.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"crop {w}x{h} at ({x0}, {y0}) leaves the {width}x{height} image")
    strip = np.zeros((height, w), dtype=bool)
    strip[y0 : y0 + h] = crop
    flat = strip.ravel(order="F")
    # Run boundaries: where the value changes; COCO counts start with a run of zeros.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs.insert(0, 0)
    runs[0] += x0 * height
    trailing = (width - x0 - w) * height
    if len(runs) % 2 == 1:  # ends with zeros: extend that run
        runs[-1] += trailing
    elif trailing:
        runs.append(trailing)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def coco_rle(rle: dict) -> dict:
    """A compressed or uncompressed COCO RLE (as JSON holds it) in the form pycocotools computes on."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return {"size": list(rle["size"]), "counts": counts}


def rle_to_mask(rle: dict) -> np.ndarray:
    """(H, W) bool mask of a compressed or uncompressed COCO RLE."""
    return mask_utils.decode(coco_rle(rle)).astype(bool)


def rle_intersection_union(a: dict, b: dict) -> tuple[int, int]:
    """Pixels in both masks and in either, computed on the runs (no mask is decoded)."""
    a, b = coco_rle(a), coco_rle(b)
    if a["size"] != b["size"]:
        raise ValueError(f"masks of different sizes: {a['size']} and {b['size']}")
    both = int(mask_utils.area(mask_utils.merge([a, b], intersect=True)))
    return both, int(mask_utils.area(a)) + int(mask_utils.area(b)) - both
