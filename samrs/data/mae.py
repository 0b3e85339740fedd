"""MAE pre-training data (SAMRS-MAE, paper A.4): the SAMRS training images clipped into crops.

Every training image of every subset is cut into `crops.size` x `crops.size` crops every
`crops.stride` pixels (384 / 300 in the paper; the last row and column shifted back to end at the
border, images smaller than a crop give one crop of the whole image), counted from the image sizes
the block cache's manifest records, without decoding an image. A crop is a window into its image's
block file, not a new file. A sample is MAE's augmentation of a crop: a random resized crop
(`transform.scale` of the area, aspect ratio in `transform.ratio`, torchvision's rule) resized to
`transform.input_size` with PIL's bicubic filter, a horizontal flip with probability `hflip`, and
ImageNet normalisation; the random window is drawn first and only the pixels under it are read.
All crops of all subsets form one dataset that an epoch visits once, shuffled (under DDP Lightning
gives each process its share through a DistributedSampler); there is no validation.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from samrs.data.blocks import Window
from samrs.data.datamodule import SAMRSDataModule, _plain
from samrs.data.dataset import process_seed
from samrs.data.tiles import tile_windows
from samrs.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from samrs.errors import ConfigError
from samrs.utils.logging import get_logger
from samrs.utils.workers import WorkerInit

log = get_logger(__name__)

# SAMRS-MAE's crops over SOTA + SIOR + FAST (paper A.4), printed beside the count of the data at hand.
PAPER_CROP_COUNT = 609_707


class CropIndex:
    """The crops of a set of images as flat arrays (compact in every DataLoader worker): for crop i,
    its subset's position in `subsets`, its image's position in `names`, and its window."""

    def __init__(self, subsets: Sequence[str], names: Sequence[str], subset_of: np.ndarray, image_of: np.ndarray,
                 windows: np.ndarray) -> None:
        self.subsets, self.names = list(subsets), list(names)
        self.subset_of, self.image_of, self.windows = subset_of, image_of, windows

    @classmethod
    def build(cls, sizes: Mapping[str, Mapping[str, Sequence[int]]], size: int, stride: int) -> CropIndex:
        """`sizes`: {subset: {image name: (height, width)}}, crops in that order."""
        names, subset_of, image_of, windows = [], [], [], []
        for s, images in enumerate(sizes.values()):
            for name, (height, width) in images.items():
                found = tile_windows(int(height), int(width), size, stride)
                subset_of += [s] * len(found)
                image_of += [len(names)] * len(found)
                windows += found
                names.append(name)
        return cls(list(sizes), names, np.asarray(subset_of, np.int16), np.asarray(image_of, np.int32),
                   np.asarray(windows, np.int32).reshape(-1, 4))

    def __len__(self) -> int:
        return len(self.image_of)

    def counts(self) -> dict[str, int]:
        """Crops per subset."""
        return {k: int((self.subset_of == i).sum()) for i, k in enumerate(self.subsets)}


def random_resized_window(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
                          rng: np.random.Generator) -> Window:
    """The window torchvision's RandomResizedCrop would cut from a height x width image: up to ten
    draws of an area share in `scale` and a log-uniform aspect ratio (width / height) in `ratio`,
    the first that fits placed uniformly; else the whole image, cut centrally to the nearest ratio."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return Window(top, top + h, left, left + w)
    h, w = height, width
    if width / height < min(ratio):
        h = int(round(width / min(ratio)))
    elif width / height > max(ratio):
        w = int(round(height * max(ratio)))
    top, left = (height - h) // 2, (width - w) // 2
    return Window(top, top + h, left, left + w)


class MAETransform:
    """A crop window -> MAE's training sample: a random resized part of it (`plan`), then resize to
    `input_size` (PIL bicubic, as torchvision on PIL images), flip, normalise (`finish`)."""

    def __init__(self, input_size: int = 224, scale: Sequence[float] = (0.2, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), hflip: float = 0.5,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"data.transform.scale={list(scale)} must be 0 < min <= max <= 1 (shares of the crop)")
        self.input_size, self.scale, self.ratio, self.hflip = int(input_size), tuple(scale), tuple(ratio), hflip
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.rng = np.random.default_rng()

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def plan(self, crop: Window) -> tuple[Window, bool]:
        """The window to read (in the image's coordinates) and whether to flip it."""
        part = random_resized_window(crop.bottom - crop.top, crop.right - crop.left, self.scale, self.ratio, self.rng)
        window = Window(part.top + crop.top, part.bottom + crop.top, part.left + crop.left, part.right + crop.left)
        return window, bool(self.rng.random() < self.hflip)

    def finish(self, pixels: np.ndarray, flip: bool) -> torch.Tensor:
        side = self.input_size
        image = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((side, side), Image.Resampling.BICUBIC))
        if flip:
            image = image[:, ::-1]
        chw = image.transpose(2, 0, 1).astype(np.float32) / 255.0
        return torch.from_numpy((chw - self.mean) / self.std)


class MAECropDataset(Dataset):
    """The crops of `index` read from the block caches `readers` (one per subset), through `transform`."""

    def __init__(self, index: CropIndex, readers: Mapping[str, Any], transform: MAETransform) -> None:
        self.index, self.transform = index, transform
        self.readers = [readers[k] for k in index.subsets]
        self._seeded_pid: int | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._seeded_pid != os.getpid():  # first sample in this process (worker or main)
            self.transform.reseed(process_seed())
            self._seeded_pid = os.getpid()
        index = self.index
        block = self.readers[index.subset_of[i]].open(index.names[index.image_of[i]])
        window, flip = self.transform.plan(Window(*(int(v) for v in index.windows[i])))
        return {"image": self.transform.finish(block.read_image(window), flip)}


class MAEDataModule(SAMRSDataModule):
    """The training images of SAMRS-format subsets as MAE crops (the module docstring says how).

    `crops`: {size, stride} of the crops cut from each image; `transform`: MAETransform's keyword
    arguments. `batch_size` is per process (the task scales the lr by the total). Subsets, layout,
    cache, on_error, generate, workers: as SAMRSDataModule (the block cache must be enabled: crops
    are windows into it).
    """

    def __init__(self, crops: Mapping[str, int], transform: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("batch_size", 256)
        super().__init__(**kwargs)
        if self.cache_dir is None:
            raise ConfigError("MAE crops are windows into the block cache of the images: set data.cache.enabled=true")
        crops = dict(_plain(crops))
        self.crop_size, self.crop_stride = int(crops["size"]), int(crops["stride"])
        if not 0 < self.crop_stride <= self.crop_size:
            raise ConfigError(f"data.crops.stride={self.crop_stride} must be in 1..{self.crop_size} (the crop size)")
        self.transform = MAETransform(**dict(_plain(transform) or {}))
        self.train_set: MAECropDataset | None = None

    def cached_splits(self) -> tuple[str, ...]:
        return ("train",)

    def image_sizes(self) -> tuple[dict[str, dict[str, list[int]]], dict[str, Any]]:
        """({subset: {image: [height, width]}} of the usable training images, as the cache manifest
        records them; {subset: block reader})."""
        sizes, readers = {}, {}
        for subset in self.subsets:
            names, readers[subset] = self._names(subset, "train")
            entries = self.cache_of(subset).manifest()
            sizes[subset] = {n: entries[n]["shape"] for n in names}
        return sizes, readers

    def setup(self, stage: str | None = None) -> None:
        if stage not in ("fit", None) or self.train_set is not None:
            return
        sizes, readers = self.image_sizes()
        index = CropIndex.build(sizes, self.crop_size, self.crop_stride)
        self.train_set = MAECropDataset(index, readers, self.transform)
        counts = index.counts()
        parts = ", ".join(f"{k} {counts[k]:,} from {len(sizes[k]):,} images" for k in sizes)
        log.info("MAE crops: %d px every %d px: %s; %s crops in all (SAMRS-MAE, paper A.4: %s over SOTA + SIOR + "
                 "FAST)", self.crop_size, self.crop_stride, parts, f"{len(index):,}", f"{PAPER_CROP_COUNT:,}")

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            raise RuntimeError("setup('fit') first")
        if len(self.train_set) < self.batch_size:
            raise ConfigError(f"data.batch_size={self.batch_size} is larger than the {len(self.train_set)} MAE crops: "
                              "lower it or give more images")
        # Lightning swaps the shuffling sampler for a DistributedSampler under DDP (use_distributed_sampler)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0, worker_init_fn=WorkerInit())

    def val_dataloader(self) -> list:
        """MAE pre-training validates nothing (as the official MAE)."""
        return []
