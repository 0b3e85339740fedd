"""Augmentation of the paper (Sec. 4.1): random scale, random crop (labels padded with 255), flips,
90-degree rotations, colour changes; and the centre crop of validation.

Colour (`color`): `oneof`, the official pre-training's one-of contrast / gamma / brightness / weak
colour jitter with probability 0.3 in all; `separate`, colour jitter and gamma as steps of their own;
`none` (the official fine-tuning). Padding of crops larger than the (scaled) image is centred as
albumentations' PadIfNeeded pads by default (`pad_position=center`, the official code) or at the
bottom/right (`top_left`). docs/decisions.md lists what differs from the official code.

A transform is planned before any pixel is read: `plan(height, width)` returns the source window
it needs and its random parameters, `finish(image, label, params)` turns the window into the
sample. The window-first training transform draws the scale and the crop position exactly as
albumentations' RandomScale + PadIfNeeded + RandomCrop would, then resamples only the source
pixels under the crop in one affine warp, so it never decodes or resizes the rest of the tile.
`WholeImage` runs a plain albumentations pipeline on the full image (the naive reference, and the
way to run any other albumentations recipe).

Multispectral images (`channels` bands of 8 or 16 bits, data.bands) first become floats in [0, 1]
(divided by `max_pixel_value`, default the data type's maximum); of the colour steps only those that
mean something for any band take part (`color_ops(rgb=False)`): brightness and contrast (one factor for
all bands) and gamma. Saturation and hue are RGB notions and are left out. `mean` and `std` then have one value per band,
in that [0, 1] scale.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from typing import Any, Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from samrs.classes import IGNORE_INDEX
from samrs.data.blocks import Window
from samrs.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Sample = dict[str, Any]


COLORS = ("oneof", "separate", "none")
PAD_POSITIONS = ("center", "top_left")
MASK_INTERPOLATIONS = {"nearest_exact": cv2.INTER_NEAREST_EXACT, "nearest": cv2.INTER_NEAREST}


def _choice(key: str, value: str, choices) -> str:
    """`value` when it is one of `choices`, else an error naming the config key."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {', '.join(choices)}")
    return value


def color_ops(
    color: str = "oneof",
    color_p: float = 0.3,
    color_jitter: float = 0.5,
    jitter: Sequence[float] = (0.2, 0.2, 0.2, 0.05),
    gamma: float = 0.5,
    gamma_limit: Sequence[float] = (80, 120),
    rgb: bool = True,
) -> list[A.BasicTransform]:
    """The colour steps. `oneof`: with probability `color_p` one of contrast +-0.2, gamma 80-120,
    brightness +-0.2 (weights 0.5 each) or colour jitter (0.07, 0.07, 0.1, 0.1; weight 0.3), the chosen
    one always applied: the official pre-training's OneOf of albumentations 1.x RandomContrast,
    RandomGamma, RandomBrightness and ColorJitter at their default settings. `separate`: colour jitter
    (`jitter` = brightness, contrast, saturation, hue) with probability `color_jitter`, then gamma
    (`gamma_limit`) with probability `gamma`. `none`: no colour change. `rgb=False` (any number of
    bands in [0, 1]): the same without saturation and hue, RGB notions: `oneof` draws one of contrast,
    gamma or brightness, `separate` changes brightness and contrast (`jitter`'s first two)."""
    _choice("data.train_transform.color", color, COLORS)
    if color == "none":
        return []
    if color == "separate":
        b, c, s, h = jitter
        first = (A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=color_jitter) if rgb
                 else A.RandomBrightnessContrast(brightness_limit=b, contrast_limit=c, p=color_jitter))
        return [first, A.RandomGamma(gamma_limit=tuple(gamma_limit), p=gamma)]
    choices = [
        A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=0.5),  # RandomContrast()
        A.RandomGamma(gamma_limit=(80, 120), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=0.5),  # RandomBrightness()
    ]
    if rgb:
        choices.append(A.ColorJitter(brightness=0.07, contrast=0.07, saturation=0.1, hue=0.1, p=0.3))
    return [A.OneOf(choices, p=color_p)]


def crop_ops(
    hflip: float = 0.5,
    vflip: float = 0.5,
    rotate90: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    channels: int | None = None,
    max_pixel_value: float | None = None,
    **color: Any,
) -> list[A.BasicTransform]:
    """What follows the crop: flips, rot90, the colour steps (`color_ops`), normalisation, tensors.
    `channels`: multispectral images of that many bands (module docstring); None: 8-bit RGB."""
    flips = [A.HorizontalFlip(p=hflip), A.VerticalFlip(p=vflip), A.RandomRotate90(p=rotate90)]
    if channels is None:
        return [*flips, *color_ops(**color), *normalize_ops(mean, std)]
    return [
        *flips,
        A.ToFloat(max_value=max_pixel_value),
        *color_ops(**color, rgb=False),
        *normalize_ops(mean, std, channels, max_pixel_value)[1:],
    ]


def normalize_ops(mean: Sequence[float], std: Sequence[float], channels: int | None = None,
                  max_pixel_value: float | None = None) -> list[A.BasicTransform]:
    """Normalisation and tensors: 8-bit RGB by `mean` and `std` in [0, 1] units (albumentations'
    default), or `channels` bands scaled to [0, 1] by `max_pixel_value` (None: the data type's maximum)."""
    if channels is None:
        return [A.Normalize(mean=mean, std=std), ToTensorV2()]
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(f"{channels} bands need {channels} values of mean and std (data.*_transform.mean/std), "
                          f"got {len(mean)} and {len(std)}")
    return [A.ToFloat(max_value=max_pixel_value), A.Normalize(mean=mean, std=std, max_pixel_value=1.0), ToTensorV2()]


def _pad(size: int, position: str = "center") -> A.PadIfNeeded:
    return A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX,
                         position=position)


def pad_offset(length: int, size: int, position: str) -> int:
    """Where a side of `length` starts in the `size` crop padded around it (PadIfNeeded's rule)."""
    return (size - length) // 2 if position == "center" and length < size else 0


def _as_sample(out: dict[str, Any]) -> Sample:
    return {"image": out["image"], "mask": torch.as_tensor(out["mask"]).long()}


def _pad_to(array: np.ndarray, size: int, value: int, top: int = 0, left: int = 0) -> np.ndarray:
    """`array` placed at (top, left) of a size x size array filled with `value`."""
    h, w = array.shape[:2]
    if h == size and w == size:
        return array
    out = np.full((size, size) + array.shape[2:], value, array.dtype)
    out[top:top + h, left:left + w] = array
    return out


class WindowTransform(ABC):
    """Base: random state that each worker process reseeds, and the albumentations tail."""

    def __init__(self, ops: Sequence[A.BasicTransform]) -> None:
        self.ops = A.Compose(list(ops))
        self.rng = np.random.default_rng()

    def reseed(self, seed: int) -> None:
        """Fresh streams from `seed`: once per worker process (forked workers would otherwise share
        one), or per sample (the training sampler's seeds).

        All albumentations ops draw from one shared generator pair, one after the other: its own
        `set_random_seed` gives every op a generator with the same seed, so their draws coincide
        (horizontal flip exactly when vertical flip, rotation and jitter too).
        """
        own, albu = np.random.SeedSequence(seed).spawn(2)
        self.rng = np.random.default_rng(own)
        albu_seed = int(albu.generate_state(1)[0])
        self.ops.set_random_state(np.random.default_rng(albu_seed), random.Random(albu_seed))

    def _padded_sample(self, image: np.ndarray, label: np.ndarray, size: int, position: str) -> Sample:
        """A crop padded to size x size (image 0, label 255; centred or at the bottom/right), through
        the albumentations tail."""
        top, left = pad_offset(image.shape[0], size, position), pad_offset(image.shape[1], size, position)
        image = _pad_to(np.ascontiguousarray(image), size, 0, top, left)
        label = _pad_to(np.ascontiguousarray(label), size, IGNORE_INDEX, top, left)
        return _as_sample(self.ops(image=image, mask=label))

    @abstractmethod
    def plan(self, height: int, width: int) -> tuple[Window, Any]:
        """The source window to read and the random parameters drawn for this sample."""

    @abstractmethod
    def finish(self, image: np.ndarray, label: np.ndarray, params: Any) -> Sample:
        """The sample made from the window's pixels."""


class WholeImage(WindowTransform):
    """Any albumentations pipeline applied to the whole decoded image."""

    def plan(self, height: int, width: int) -> tuple[Window, None]:
        return Window.full(height, width), None

    def finish(self, image: np.ndarray, label: np.ndarray, params: None) -> Sample:
        return _as_sample(self.ops(image=image, mask=label))


class RandomScaleCrop(WindowTransform):
    """Random scale then random crop, computed on the crop's source window only.

    With probability `scale_p` the scale s is uniform in `scale_range` (else 1); the scaled size is
    int(H*s) x int(W*s), padded to the crop with 0 (image) and 255 (label), centred or at the
    bottom/right (`pad_position`); the crop's top-left corner is uniform over the valid positions.
    Output pixel X of the scaled image samples the source at (X + 0.5) * H / int(H*s) - 0.5
    (cv2.resize's bilinear mapping); labels take the nearest source pixel with the same centre
    alignment (`mask_interpolation=nearest_exact`, cv2.INTER_NEAREST_EXACT) or source pixel
    floor(X * H / int(H*s)) (`nearest`, cv2.INTER_NEAREST, half a pixel off the image).
    """

    def __init__(self, crop_size: int, scale_range: Sequence[float], scale_p: float,
                 ops: Sequence[A.BasicTransform], pad_position: str = "center",
                 mask_interpolation: str = "nearest_exact") -> None:
        super().__init__(ops)
        self.crop_size = crop_size
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.scale_p = scale_p
        self.pad_position = _choice("data.train_transform.pad_position", pad_position, PAD_POSITIONS)
        self.centred_labels = _choice("data.train_transform.mask_interpolation", mask_interpolation,
                                      MASK_INTERPOLATIONS) == "nearest_exact"

    def plan(self, height: int, width: int) -> tuple[Window, dict[str, Any]]:
        c = self.crop_size
        s = self.rng.uniform(*self.scale_range) if self.rng.random() < self.scale_p else 1.0
        sh, sw = max(1, int(height * s)), max(1, int(width * s))
        y0 = int(self.rng.integers(0, max(sh, c) - c + 1))
        x0 = int(self.rng.integers(0, max(sw, c) - c + 1))
        rows, cols = min(c, sh - y0), min(c, sw - x0)  # the part of the crop that is image
        fy, fx = height / sh, width / sw
        top, bottom = _source_span(y0, rows, fy, height)
        left, right = _source_span(x0, cols, fx, width)
        params = {"y0": y0, "x0": x0, "rows": rows, "cols": cols, "fy": fy, "fx": fx, "top": top, "left": left}
        return Window(top, bottom, left, right), params

    def finish(self, image: np.ndarray, label: np.ndarray, p: dict[str, Any]) -> Sample:
        c, rows, cols = self.crop_size, p["rows"], p["cols"]
        if p["fy"] == 1.0 and p["fx"] == 1.0:  # unscaled: the window is the crop
            crop, crop_label = image, label
        else:
            warp = np.array([[p["fx"], 0.0, (p["x0"] + 0.5) * p["fx"] - 0.5 - p["left"]],
                             [0.0, p["fy"], (p["y0"] + 0.5) * p["fy"] - 0.5 - p["top"]]])
            crop = cv2.warpAffine(image, warp, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
            shift = 0.5 if self.centred_labels else 0.0
            ys = _nearest(p["y0"], rows, p["fy"], image.shape[0] + p["top"], shift) - p["top"]
            xs = _nearest(p["x0"], cols, p["fx"], image.shape[1] + p["left"], shift) - p["left"]
            crop_label = label[ys[:, None], xs[None, :]]
        return self._padded_sample(crop, crop_label, c, self.pad_position)


def _source_span(start: int, count: int, factor: float, size: int) -> tuple[int, int]:
    """Source pixels [first, last) that the bilinear and nearest samples (centre-aligned or
    OpenCV's floor(X * factor)) of scaled pixels start .. start+count-1 touch (factor = source /
    scaled size)."""
    if factor == 1.0:
        return start, start + count
    lo = min((start + 0.5) * factor - 0.5, start * factor)
    hi = (start + count - 0.5) * factor - 0.5
    return max(0, math.floor(lo)), min(size, math.floor(hi) + 2)


def _nearest(start: int, count: int, factor: float, size: int, shift: float = 0.5) -> np.ndarray:
    """Nearest source index of scaled pixels start .. start+count-1: centre-aligned with shift 0.5,
    OpenCV's INTER_NEAREST (floor of X * factor) with 0."""
    return np.minimum(((np.arange(start, start + count) + shift) * factor).astype(np.int64), size - 1)


class CenterCrop(WindowTransform):
    """The central crop_size x crop_size window (padded with 0 / 255 when the image is smaller:
    centred, or at the bottom/right with `pad_position=top_left`)."""

    def __init__(self, crop_size: int, ops: Sequence[A.BasicTransform], pad_position: str = "center") -> None:
        super().__init__(ops)
        self.crop_size = crop_size
        self.pad_position = _choice("pad_position", pad_position, PAD_POSITIONS)

    def plan(self, height: int, width: int) -> tuple[Window, None]:
        c = self.crop_size
        top, left = max(0, (height - c) // 2), max(0, (width - c) // 2)
        return Window(top, min(height, top + c), left, min(width, left + c)), None

    def finish(self, image: np.ndarray, label: np.ndarray, params: None) -> Sample:
        return self._padded_sample(image, label, self.crop_size, self.pad_position)


def train_transform(
    crop_size: int = 224,
    scale_range: Sequence[float] = (0.5, 2.0),
    scale_p: float = 0.5,
    window_first: bool = True,
    pad_position: str = "center",
    mask_interpolation: str = "nearest_exact",
    **crop_kwargs: Any,
) -> WindowTransform:
    """The training augmentation; `window_first=False` gives the same recipe as a plain
    albumentations pipeline over the whole image (slower, for reference and benchmarks)."""
    ops = crop_ops(**crop_kwargs)
    if window_first:
        return RandomScaleCrop(crop_size, scale_range, scale_p, ops, pad_position, mask_interpolation)
    lo, hi = scale_range
    return WholeImage([
        A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=MASK_INTERPOLATIONS[_choice("data.train_transform.mask_interpolation",
                                                                     mask_interpolation, MASK_INTERPOLATIONS)],
                      p=scale_p),
        _pad(crop_size, _choice("data.train_transform.pad_position", pad_position, PAD_POSITIONS)),
        A.RandomCrop(crop_size, crop_size),
        *ops,
    ])


def whole_transform(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    channels: int | None = None, max_pixel_value: float | None = None) -> WindowTransform:
    """The whole image, normalised: validation and evaluation by sliding windows (samrs.inference)."""
    return WholeImage(normalize_ops(mean, std, channels, max_pixel_value))


def val_transform(
    crop_size: int = 512, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
    window_first: bool = True, resize: int | None = None, channels: int | None = None,
    max_pixel_value: float | None = None,
) -> WindowTransform:
    """Centre crop of `crop_size` (paper A.5: 512x512 centre crops of the validation split).

    `resize`: the whole image resized to resize x resize instead (bilinear; labels nearest), the
    official val transform's `A.Resize(IMAGE_SIZE, IMAGE_SIZE)`: the paper's "224-resize validation"
    of InternImage (Table 9) is `resize=224`. `channels`, `max_pixel_value`: multispectral images."""
    ops = normalize_ops(mean, std, channels, max_pixel_value)
    if resize:
        return WholeImage([A.Resize(resize, resize, interpolation=cv2.INTER_LINEAR,
                                    mask_interpolation=cv2.INTER_NEAREST), *ops])
    if window_first:
        return CenterCrop(crop_size, ops)
    return WholeImage([_pad(crop_size), A.CenterCrop(crop_size, crop_size), *ops])
