"""LightningDataModule over one or several SAMRS-format subsets.

Training yields one dict per step, {subset: batch}, with per-subset batch sizes proportional to the
subset sizes (DESIGN.md); validation gives one loader per subset, in the order of `subsets`, so
metrics stay per subset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samrs.classes import subset_classes
from samrs.data.batching import proportional_batch_sizes
from samrs.data.dataset import SegmentationDataset
from samrs.data.transforms import train_transform, val_transform
from samrs.utils.logging import get_logger

log = get_logger(__name__)


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class SAMRSDataModule(L.LightningDataModule):
    """Subsets given as {name: {root, classes, ...SegmentationDataset options}}; null entries are
    left out.

    `generate` (optional): write generated scenes into each subset's root in `prepare_data` when it
    is missing there, with these keyword arguments of `write_generated_subset` (the demo data).
    """

    def __init__(
        self,
        subsets: Mapping[str, Mapping[str, Any]],
        batch_size: int = 96,
        val_batch_size: int = 8,
        num_workers: int = 4,
        train_transform: Mapping[str, Any] | None = None,
        val_transform: Mapping[str, Any] | None = None,
        generate: Mapping[str, Any] | None = None,
        pin_memory: bool = True,
    ) -> None:
        super().__init__()
        # A subset set to null is left out (data.subsets.sior=null trains without SIOR).
        self.subsets = {k: dict(v) for k, v in _plain(subsets).items() if v is not None}
        if not self.subsets:
            raise ValueError("data.subsets is empty: name at least one subset")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.train_transform_cfg = dict(_plain(train_transform) or {})
        self.val_transform_cfg = dict(_plain(val_transform) or {})
        self.generate = _plain(generate)
        self.train_sets: dict[str, SegmentationDataset] = {}
        self.val_sets: dict[str, SegmentationDataset] = {}

    @property
    def subset_names(self) -> list[str]:
        return list(self.subsets)

    def classes_of(self, subset: str):
        return subset_classes(self.subsets[subset].get("classes", subset))

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: self.classes_of(k).num_classes for k in self.subsets}

    @property
    def class_names(self) -> dict[str, list[str]]:
        return {k: list(self.classes_of(k).names) for k in self.subsets}

    def prepare_data(self) -> None:
        if not self.generate:
            return
        from samrs.scenes.subset import write_generated_subset

        for name, spec in self.subsets.items():
            write_generated_subset(spec["root"], spec.get("classes", name), **self.generate)

    def _dataset(self, name: str, split: str, transform) -> SegmentationDataset:
        spec = {k: v for k, v in self.subsets[name].items() if k not in ("classes",)}
        root = Path(spec.pop("root"))
        return SegmentationDataset(root, split=split, transform=transform, **spec)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and not self.train_sets:
            tf = train_transform(**self.train_transform_cfg)
            self.train_sets = {k: self._dataset(k, "train", tf) for k in self.subsets}
            sizes = {k: len(v) for k, v in self.train_sets.items()}
            self.train_batch_sizes = proportional_batch_sizes(self.batch_size, sizes)
            log.info("training batch %d split over subsets as %s (sizes %s)", self.batch_size,
                     self.train_batch_sizes, sizes)
        if stage in ("fit", "validate", None) and not self.val_sets:
            tf = val_transform(**self.val_transform_cfg)
            self.val_sets = {k: self._dataset(k, "val", tf) for k in self.subsets}

    def _loader(self, dataset, batch_size: int, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> dict[str, DataLoader]:
        # A dict of loaders: Lightning's CombinedLoader yields {subset: batch} each step.
        return {k: self._loader(ds, self.train_batch_sizes[k], True, True) for k, ds in self.train_sets.items()}

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, self.val_batch_size, False, False) for ds in self.val_sets.values()]
