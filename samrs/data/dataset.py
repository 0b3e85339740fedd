"""A segmentation dataset over one subset: images/ + labels/ + a split file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from samrs.utils.io import read_label, read_rgb


class SegmentationDataset(Dataset):
    """(image, label) pairs of one split of a SAMRS-format subset.

    Returns dicts {"image": float tensor (3, H, W), "mask": long tensor (H, W), "name": str} once
    `transform` (albumentations with ToTensorV2) is applied; raw uint8 arrays without it.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_dir: str = "images",
        label_dir: str = "labels",
        image_suffix: str = ".png",
        label_suffix: str = ".png",
        split_file: str = "{split}.txt",
        transform: Callable[..., dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.image_dir, self.label_dir = self.root / image_dir, self.root / label_dir
        self.image_suffix, self.label_suffix = image_suffix, label_suffix
        self.transform = transform
        split_path = self.root / split_file.format(split=split)
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path}: split file not found (is {self.root} a SAMRS-format subset?)")
        self.names = [line.strip() for line in split_path.read_text().splitlines() if line.strip()]
        if not self.names:
            raise ValueError(f"{split_path}: the split lists no images")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        name = self.names[index]
        image = read_rgb(self.image_dir / f"{name}{self.image_suffix}")
        label = read_label(self.label_dir / f"{name}{self.label_suffix}")
        if image.shape[:2] != label.shape:
            raise ValueError(f"{name}: image is {image.shape[:2]} but label is {label.shape}")
        return image, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.load(index)
        if self.transform is None:
            return {"image": image, "mask": label, "name": self.names[index]}
        out = self.transform(image=image, mask=label)
        return {"image": out["image"], "mask": out["mask"].long(), "name": self.names[index]}
