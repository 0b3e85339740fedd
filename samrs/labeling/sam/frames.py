"""SAM's coordinate frames for one image size, and its mask post-processing written as taps.

Three frames (x right, y down, continuous coordinates, (0, 0) the top-left corner of a pixel):

- image: the original (H, W) image;
- input: what the image encoder sees, img_size x img_size (1024; SAM 3: 1008). SAM 1 and SAM-HQ
  resize the image so its long side is img_size (ResizeLongestSide) and pad bottom/right; SAM 2,
  EdgeTAM and SAM 3 (`square`) resize it to the square, changing its aspect ratio;
- low-res: the input frame divided by img_size / low_res (1024 / 256 = 1008 / 288 = 4); the mask
  decoder predicts, and mask prompts are given, in this frame.

SAM 1 / SAM-HQ's `postprocess_masks` take low-res logits to the image by two bilinear resizes
(align_corners=False): low_res -> img_size, crop to the input size, -> (H, W); the square families'
processors (Sam2Processor.post_process_masks) by one: low_res -> (H, W). Both are separable and
linear, so along each axis every image row (column) is a weighted sum of at most 3 consecutive
low-res rows (columns). `postprocess_taps` computes those weights once per image size; the engine
applies them to a window of low-res logits around each object and so reproduces the full-size
masks inside that window without ever making a full-size mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from segment_anything.utils.transforms import ResizeLongestSide

TAPS = 3  # low-res rows (columns) that one image row (column) depends on


@dataclass(frozen=True)
class SamFrame:
    """The sizes that fix SAM's frames for one image."""

    height: int
    width: int
    input_height: int
    input_width: int
    img_size: int  # SAM's square input side (1024)
    low_res: int  # side of the low-res mask frame (256)
    square: bool = False  # resized to img_size x img_size (SAM 2, EdgeTAM, SAM 3), not longest side + pad

    @classmethod
    def for_image(cls, height: int, width: int, img_size: int, low_res: int, square: bool = False) -> SamFrame:
        if square:
            return cls(height, width, img_size, img_size, img_size, low_res, True)
        input_height, input_width = ResizeLongestSide.get_preprocess_shape(height, width, img_size)
        return cls(height, width, input_height, input_width, img_size, low_res)

    @property
    def input_scale(self) -> np.ndarray:
        """(2,) x, y factors image -> input frame, as ResizeLongestSide.apply_coords uses them."""
        return np.array([self.input_width / self.width, self.input_height / self.height])

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) image-frame points in the input frame (ResizeLongestSide.apply_coords; the square
        families' processors scale x by img_size / W and y by img_size / H the same way)."""
        return np.asarray(xy, dtype=np.float64) * self.input_scale

    def to_low_res(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) image-frame points in the low-res mask frame."""
        return np.asarray(xy, dtype=np.float64) * self.input_scale * (self.low_res / self.img_size)

    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Row start, row weights, column start, column weights (see `postprocess_taps`)."""
        if self.square:
            rows, cols = resize_taps(self.height, self.low_res), resize_taps(self.width, self.low_res)
        else:
            rows = postprocess_taps(self.height, self.input_height, self.img_size, self.low_res)
            cols = postprocess_taps(self.width, self.input_width, self.img_size, self.low_res)
        return rows[0], rows[1], cols[0], cols[1]


def _bilinear_source(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, upper index and upper weight of each output of a 1-D bilinear resize.

    PyTorch's rule for align_corners=False: source = (dst + 0.5) * in / out - 0.5, clamped at 0;
    the upper neighbour is clamped to the last input.
    """
    src = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    return lo, hi, src - lo


@lru_cache(maxsize=64)
def postprocess_taps(out_size: int, input_size: int, img_size: int, low_res: int) -> tuple[np.ndarray, np.ndarray]:
    """SAM's postprocess_masks along one axis as (start (out,), weights (out, TAPS)).

    Output position i of the image axis equals sum_k weights[i, k] * low_res_logits[start[i] + k]
    (indices past the last low-res position carry weight 0). Composed in float64 from the two
    bilinear resizes: low_res -> img_size, crop to input_size, -> out_size.
    """
    lo1, hi1, w1 = _bilinear_source(img_size, low_res)
    lo2, hi2, w2 = _bilinear_source(out_size, input_size)
    dense = np.zeros((out_size, low_res + TAPS), dtype=np.float64)
    rows = np.arange(out_size)
    for mid, weight in ((lo2, 1.0 - w2), (hi2, w2)):
        np.add.at(dense, (rows, lo1[mid]), weight * (1.0 - w1[mid]))
        np.add.at(dense, (rows, hi1[mid]), weight * w1[mid])
    start = lo1[lo2]
    weights = dense[rows[:, None], start[:, None] + np.arange(TAPS)]
    if not np.allclose(weights.sum(axis=1), 1.0):  # every non-zero tap lies in the window
        raise AssertionError(f"postprocess taps do not cover the resize {low_res}->{img_size}->{out_size}")
    return start, weights.astype(np.float32)


@lru_cache(maxsize=64)
def resize_taps(out_size: int, low_res: int) -> tuple[np.ndarray, np.ndarray]:
    """One bilinear resize low_res -> out_size (align_corners=False) as (start, weights (out, TAPS))."""
    lo, hi, w = _bilinear_source(out_size, low_res)
    weights = np.zeros((out_size, TAPS), dtype=np.float64)
    weights[:, 0] = 1.0 - w
    np.add.at(weights, (np.arange(out_size), hi - lo), w)  # hi == lo at the last row: one tap
    return lo, weights.astype(np.float32)
