"""Albumentations pipelines of the paper (Sec. 4.1): scale, flips, 90-degree rotations, colour
jitter, gamma, random crops; labels are padded with 255 (ignored)."""

from __future__ import annotations

from typing import Sequence

import albumentations as A
import cv2
from albumentations.pytorch import ToTensorV2

from samrs.classes import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pad(size: int) -> A.PadIfNeeded:
    return A.PadIfNeeded(size, size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX,
                         position="top_left")


def train_transform(
    crop_size: int = 224,
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: float = 0.5,
    vflip: float = 0.5,
    rotate90: float = 0.5,
    color_jitter: float = 0.5,
    jitter: Sequence[float] = (0.2, 0.2, 0.2, 0.05),
    gamma: float = 0.5,
    gamma_limit: Sequence[float] = (80, 120),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> A.Compose:
    """Random scale in `scale_range`, pad to the crop with 255 labels, random crop, flips, rot90,
    colour jitter (brightness, contrast, saturation, hue), gamma, normalisation."""
    lo, hi = scale_range
    b, c, s, h = jitter
    return A.Compose([
        A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                      mask_interpolation=cv2.INTER_NEAREST, p=1.0),
        _pad(crop_size),
        A.RandomCrop(crop_size, crop_size),
        A.HorizontalFlip(p=hflip),
        A.VerticalFlip(p=vflip),
        A.RandomRotate90(p=rotate90),
        A.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h, p=color_jitter),
        A.RandomGamma(gamma_limit=tuple(gamma_limit), p=gamma),
        A.Normalize(mean=mean, std=std),
        ToTensorV2(),
    ])


def val_transform(
    crop_size: int = 512, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> A.Compose:
    """Centre crop of `crop_size` (padded with 255 labels when the image is smaller)."""
    return A.Compose([_pad(crop_size), A.CenterCrop(crop_size, crop_size), A.Normalize(mean=mean, std=std),
                      ToTensorV2()])
