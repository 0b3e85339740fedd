"""Instance segmentation data over SAMRS subsets: images from the block cache, instances from the
subset's COCO instances file (samrs.data.instance_index), augmented exactly as the semantic task.

A sample is {"image": float (3, H, W), "boxes": float (N, 4) x0, y0, x1, y1 (pixel edges),
"labels": long (N,) class ids, "masks": uint8 (N, H, W), "iscrowd": long (N,), "name", "image_id"};
whole images (`val_mode=whole`) also carry "rboxes": float (N, 8), each instance's rotated box from the
instances file (the source's) or the minimum-area rectangle of its mask.

Augmentation reuses the semantic transforms (samrs.data.transforms) unchanged: the instances whose
box meets the crop's source window are decoded there, packed eight to a byte (bit set = outside the
instance, so the 255 the transforms pad labels with means "no instance") and passed through the
transform as a many-channel label map. Scale, crop, padding, flips and 90-degree rotations therefore
move every mask exactly as they move the semantic labels, with the image; boxes are then taken from
the transformed masks, so masks and boxes always agree. Instances less visible in the crop than
`min_visible` of their area, and instances no pixel of which survives, are dropped.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from samrs.errors import BadFileError, ConfigError
from samrs.data.blocks import Window
from samrs.data.datamodule import SAMRSDataModule
from samrs.data.dataset import Reader, process_seed
from samrs.data.instance_index import InstanceIndex, decode_segmentation
from samrs.data.transforms import WholeImage, WindowTransform
from samrs.geometry import mask_min_area_rect
from samrs.sources.base import Problem

TARGET_KEYS = ("boxes", "labels", "masks", "iscrowd", "rboxes")


def pack_masks(masks: np.ndarray) -> np.ndarray:
    """(N, h, w) bool -> (h, w, ceil(N / 8)) uint8 with bit i of instance i set where it is ABSENT
    (so a transform's label padding, 255, reads as no instance). N = 0 gives one all-absent channel."""
    if len(masks) == 0:
        return np.full(masks.shape[1:] + (1,), 255, np.uint8)
    return ~np.packbits(np.moveaxis(masks, 0, -1), axis=-1)


def unpack_masks(packed: np.ndarray, count: int) -> np.ndarray:
    """The inverse of `pack_masks` on a transformed (H, W, C) map: (count, H, W) bool."""
    bits = np.unpackbits(~packed.astype(np.uint8), axis=-1, count=count)
    return np.moveaxis(bits, -1, 0).astype(bool)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(N, 4) float32 x0, y0, x1, y1 around the pixels of each non-empty (N, H, W) mask (pixel edges:
    a one-pixel mask at (x, y) gives x, y, x + 1, y + 1, as COCO's bbox of the mask)."""
    if len(masks) == 0:
        return np.zeros((0, 4), np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    h, w = masks.shape[1:]
    y0, y1 = rows.argmax(axis=1), h - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def _overlaps(bbox: Sequence[float], window: Window) -> bool:
    x, y, w, h = bbox
    return x < window.right and x + w > window.left and y < window.bottom and y + h > window.top


class InstanceDataset(Dataset):
    """The images `names` of one subset with their instances from `index`.

    `transform`: a semantic WindowTransform (train_transform / val_transform), or, with
    `whole=True`, the whole-image transform (whole_transform): whole images are not cropped, and
    their samples carry rotated boxes. Keys are indices or (index, seed), as SegmentationDataset's.
    """

    def __init__(self, names: Sequence[str], reader: Reader, index: InstanceIndex, transform: WindowTransform,
                 min_visible: float = 0.5, whole: bool = False, subset: str | None = None) -> None:
        if not names:
            raise ValueError("an instance dataset needs at least one image name")
        self.names, self.reader, self.index, self.transform = list(names), reader, index, transform
        self.min_visible, self.whole, self.subset = min_visible, whole, subset
        self._seeded_pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def _seed(self, seed: int | None) -> None:
        if seed is not None:
            self.transform.reseed(seed)
        elif self._seeded_pid != os.getpid():  # first sample in this process (worker or main)
            self.transform.reseed(process_seed())
            self._seeded_pid = os.getpid()

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        name = self.names[index]
        sample = self.reader.open(name)
        image_id, height, width = self.index.image(name)
        if (height, width) != (sample.height, sample.width):
            raise BadFileError(f"{name}: the instances file gives {width}x{height} but the image is "
                               f"{sample.width}x{sample.height} (width x height)")
        annotations = self.index.annotations(name)
        self._seed(seed)
        out = self._whole(sample, annotations) if self.whole else self._window(sample, annotations)
        out.update(name=name, image_id=image_id)
        if self.subset is not None:
            out["subset"] = self.subset
        return out

    def _window(self, sample, annotations: list[dict[str, Any]]) -> dict[str, Any]:
        """A crop: decode the instances under the source window, transform them with the image."""
        window, params = self.transform.plan(sample.height, sample.width)
        image, _ = sample.read(window)
        kept, masks = [], []
        for ann in annotations:
            if not _overlaps(ann["b"], window):
                continue
            full = decode_segmentation(ann["s"], sample.height, sample.width)
            crop = full[window.top:window.bottom, window.left:window.right]
            area = int(full.sum())
            if area and crop.sum() >= self.min_visible * area:
                kept.append(ann)
                masks.append(crop)
        stacked = np.stack(masks) if masks else np.zeros((0,) + image.shape[:2], bool)
        out = self.transform.finish(image, pack_masks(stacked), params)
        masks = unpack_masks(out["mask"].numpy(), len(kept))
        alive = masks.any(axis=(1, 2))
        masks = masks[alive]
        kept = [a for a, keep in zip(kept, alive) if keep]
        return {"image": out["image"], **self._targets(kept, masks)}

    def _whole(self, sample, annotations: list[dict[str, Any]]) -> dict[str, Any]:
        """The whole image with every instance, and their rotated boxes."""
        image, _ = sample.read(Window.full(sample.height, sample.width))
        out = self.transform.finish(image, np.zeros(image.shape[:2], np.uint8), None)
        masks = np.stack([decode_segmentation(a["s"], sample.height, sample.width) for a in annotations]) \
            if annotations else np.zeros((0, sample.height, sample.width), bool)
        alive = masks.any(axis=(1, 2))
        masks, annotations = masks[alive], [a for a, keep in zip(annotations, alive) if keep]
        rboxes = [np.asarray(a["r"], np.float32).reshape(8) if a.get("r") else mask_min_area_rect(m).reshape(8)
                  for a, m in zip(annotations, masks)]
        rboxes = torch.as_tensor(np.stack(rboxes), dtype=torch.float32) if rboxes else torch.zeros(0, 8)
        return {"image": out["image"], **self._targets(annotations, masks), "rboxes": rboxes}

    @staticmethod
    def _targets(annotations: list[dict[str, Any]], masks: np.ndarray) -> dict[str, torch.Tensor]:
        return {
            "boxes": torch.from_numpy(mask_boxes(masks)),
            "labels": torch.tensor([a["c"] for a in annotations], dtype=torch.int64),
            "masks": torch.from_numpy(masks.astype(np.uint8)),
            "iscrowd": torch.tensor([a["z"] for a in annotations], dtype=torch.int64),
        }


def collate_instances(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Images stacked (all of one size), targets as a list of per-image dicts (their sizes differ)."""
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "targets": [{k: s[k] for k in TARGET_KEYS if k in s} for s in samples],
        "name": [s["name"] for s in samples],
        "image_id": torch.tensor([s["image_id"] for s in samples]),
    }


def collate_instances_by_subset(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One step's samples -> {subset: collate_instances(its samples)}, subsets in the order they come."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        groups.setdefault(sample["subset"], []).append(sample)
    return {subset: collate_instances(group) for subset, group in groups.items()}


class InstanceDataModule(SAMRSDataModule):
    """SAMRSDataModule for instance segmentation: the same subsets, layouts, checks, cache and
    augmentation; instances from each subset's COCO instances file.

    Training yields {subset: {"image", "targets", "name", "image_id"}} per step, with the same
    proportional per-subset batch sizes (ProportionalSampler); validation one loader per subset.
    `instances`: the instances file, relative to each subset's root. `min_visible`: instances less
    visible than this fraction of their area in a training or validation crop are left out of it.
    An image the instances file does not list is a problem like a missing label (`on_error`).
    """

    def __init__(self, *args: Any, instances: str = "instances.json", min_visible: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= min_visible <= 1.0:
            raise ConfigError(f"data.min_visible={min_visible}: a fraction of the instance's area, 0 to 1")
        self.instances, self.min_visible = instances, min_visible
        self.indexes: dict[str, InstanceIndex] = {}

    def index_of(self, subset: str) -> InstanceIndex:
        """The subset's instance index (in its cache directory, or in memory without the cache)."""
        if subset not in self.indexes:
            cache = self.cache_of(subset)
            self.indexes[subset] = InstanceIndex.open(self.root_of(subset) / self.instances, self.classes_of(subset),
                                                      self.layouts[subset], cache.directory if cache else None)
        return self.indexes[subset]

    def prepare_data(self) -> None:
        super().prepare_data()
        if self.cache_dir is not None:  # the on-disk index, once, where the cache is
            for subset in self.subsets:
                self.index_of(subset)

    def _dataset(self, subset: str, split: str, transform: WindowTransform) -> InstanceDataset:
        """The instance dataset of a split, after the semantic checks and the instances file's."""
        names, reader = self._names(subset, split)
        index = self.index_of(subset)
        path = self.root_of(subset) / self.instances
        unlisted = {n: Problem(str(path), None, "missing_annotation", f"image {n} is not in the instances file",
                               "skipped") for n in names if n not in index}
        self._handle(subset, split, list(unlisted.values()), len(names))
        names = [n for n in names if n not in unlisted]
        if not names:
            raise BadFileError(f"{subset}/{split}: no usable images left")
        whole = self.val_mode == "whole" and split == self.val_split and isinstance(transform, WholeImage)
        return InstanceDataset(names, reader, index, transform, self.min_visible, whole, subset)

    # The semantic loaders (proportional sampler, shards, workers) with the instances' collation:
    # targets differ in size from image to image.
    def train_dataloader(self) -> DataLoader:
        loader = super().train_dataloader()
        loader.collate_fn = collate_instances_by_subset
        return loader

    def val_dataloader(self) -> list[DataLoader]:
        loaders = super().val_dataloader()
        for loader in loaders:
            loader.collate_fn = collate_instances
        return loaders

    def category_ids(self) -> dict[str, dict[int, int]]:
        """Per subset, class id -> the instances file's category id (for COCO results files)."""
        return {k: self.index_of(k).category_of for k in self.subsets}

