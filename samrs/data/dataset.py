"""Segmentation datasets: one subset's (image, label) pairs, and several subsets as one index."""

from __future__ import annotations

import bisect
import os
from typing import Any, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from samrs.data.blocks import Window
from samrs.data.transforms import WindowTransform


class PixelSample(Protocol):
    height: int
    width: int

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]: ...


class Reader(Protocol):
    def open(self, name: str) -> PixelSample: ...


def process_seed() -> int:
    """A seed that differs between DataLoader workers (torch seeds each one differently) and between
    DDP ranks (whose workers may otherwise get the same torch seeds)."""
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(os.environ.get("RANK", 0))
    return int(np.random.SeedSequence([torch.initial_seed(), rank]).generate_state(1)[0])


class SegmentationDataset(Dataset):
    """The images `names`, read by `reader`, turned into samples by `transform`.

    A sample is {"image": float tensor (3, H, W), "mask": long tensor (H, W), "name": str}; without
    a transform, {"image": uint8 (H, W, 3), "mask": uint8 (H, W), "name"} of the whole image. With
    `subset`, samples also carry {"subset": subset}, so a validation batch says whose it is.

    The key is an index, or (index, seed): the seed of this sample's augmentation (the training
    sampler's, from the sample's place in its stream); a plain index draws from the process's own
    stream, seeded once per worker process.
    """

    def __init__(self, names: Sequence[str], reader: Reader, transform: WindowTransform | None = None,
                 subset: str | None = None) -> None:
        if not names:
            raise ValueError("a segmentation dataset needs at least one image name")
        self.names = list(names)
        self.reader = reader
        self.transform = transform
        self.subset = subset
        self._seeded_pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        name = self.names[index]
        tag = {"name": name} if self.subset is None else {"name": name, "subset": self.subset}
        sample = self.reader.open(name)
        if self.transform is None:
            image, label = sample.read(Window.full(sample.height, sample.width))
            return {"image": image, "mask": label, **tag}
        if seed is not None:
            self.transform.reseed(seed)
        elif self._seeded_pid != os.getpid():  # first sample in this process (worker or main)
            self.transform.reseed(process_seed())
            self._seeded_pid = os.getpid()
        window, params = self.transform.plan(sample.height, sample.width)
        image, label = sample.read(window)
        return {**self.transform.finish(image, label, params), **tag}


def sample_seed(seed: int, subset: int, draw: int) -> int:
    """The augmentation seed of draw `draw` of subset number `subset`'s stream."""
    return int(np.random.SeedSequence([seed, subset, draw]).generate_state(1)[0])


class MultiSubsetDataset(Dataset):
    """Several subsets behind one index (subset after subset); samples carry their "subset".

    Keys are indices, or the training sampler's (index, draw): the sample is then augmented with
    `sample_seed(seed, subset number, draw)`.
    """

    def __init__(self, datasets: Mapping[str, Dataset], seed: int = 0) -> None:
        self.datasets = dict(datasets)
        self.subsets = list(self.datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets.values()]).tolist()
        self.seed = seed

    @property
    def sizes(self) -> list[int]:
        return [len(d) for d in self.datasets.values()]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, draw = key if isinstance(key, tuple) else (key, None)
        i = bisect.bisect_right(self.offsets, index) - 1
        subset = self.subsets[i]
        local = index - self.offsets[i]
        item = self.datasets[subset][local if draw is None else (local, sample_seed(self.seed, i, draw))]
        return {**item, "subset": subset}
