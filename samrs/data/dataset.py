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
    a transform, {"image": uint8 (H, W, 3), "mask": uint8 (H, W), "name"} of the whole image.
    """

    def __init__(self, names: Sequence[str], reader: Reader, transform: WindowTransform | None = None) -> None:
        if not names:
            raise ValueError("a segmentation dataset needs at least one image name")
        self.names = list(names)
        self.reader = reader
        self.transform = transform
        self._seeded_pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        sample = self.reader.open(name)
        if self.transform is None:
            image, label = sample.read(Window.full(sample.height, sample.width))
            return {"image": image, "mask": label, "name": name}
        if self._seeded_pid != os.getpid():  # first sample in this process (worker or main)
            self.transform.reseed(process_seed())
            self._seeded_pid = os.getpid()
        window, params = self.transform.plan(sample.height, sample.width)
        image, label = sample.read(window)
        return {**self.transform.finish(image, label, params), "name": name}


class MultiSubsetDataset(Dataset):
    """Several subsets behind one index (subset after subset); samples carry their "subset"."""

    def __init__(self, datasets: Mapping[str, Dataset]) -> None:
        self.datasets = dict(datasets)
        self.subsets = list(self.datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets.values()]).tolist()

    @property
    def sizes(self) -> list[int]:
        return [len(d) for d in self.datasets.values()]

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = bisect.bisect_right(self.offsets, index) - 1
        subset = self.subsets[i]
        return {**self.datasets[subset][index - self.offsets[i]], "subset": subset}
