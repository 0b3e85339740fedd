"""LightningDataModule over one or several SAMRS-format subsets.

Training yields one dict per step, {subset: {"image", "mask", "name"}}, with per-subset batch sizes
proportional to the subset sizes (DESIGN.md), from one DataLoader whose ProportionalSampler
composes the steps of the global batch and deals them out to the DDP ranks; the loader resumes
mid-epoch. Validation gives one loader per subset, in the order of `subsets`, whose batches name
their subset ("subset"), so metrics stay per subset. docs/data.md describes layouts, checks, cache
and epoch definition.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from samrs.classes import SubsetClasses, subset_classes
from samrs.data.batching import (
    ProportionalSampler,
    ResumableLoader,
    ShardSampler,
    collate_by_subset,
    epoch_steps,
    proportional_batch_sizes,
    rank_shares,
    truncated_batch_sizes,
)
from samrs.data.blocks import BlockCodec
from samrs.data.cache import SubsetCache, problems_of
from samrs.data.dataset import MultiSubsetDataset, SegmentationDataset
from samrs.data.layout import SubsetLayout, missing_files
from samrs.data.readers import BandReader, FileReader
from samrs.data.transforms import train_transform, val_transform, whole_transform
from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.sources.base import Problem
from samrs.utils.io import read_rgb
from samrs.utils.logging import get_logger
from samrs.utils.workers import WorkerInit

log = get_logger(__name__)

ON_ERROR = ("raise", "skip")
BATCH_SPLITS = ("proportional", "official")
VAL_MODES = ("crop", "whole", "tiles")


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def _layout(subset: str, spec: dict[str, Any]) -> SubsetLayout:
    """The subset's layout: data.layout overridden by the subset's own keys (root and classes aside)."""
    keys = {f.name for f in fields(SubsetLayout)}
    unknown = set(spec) - keys - {"root", "classes"}
    if unknown:
        raise ConfigError(f"data.subsets.{subset}: unknown keys {', '.join(sorted(unknown))} (a subset takes "
                          f"root, classes and the layout keys {', '.join(sorted(keys))})")
    return SubsetLayout(**{k: v for k, v in spec.items() if k in keys})


class SAMRSDataModule(L.LightningDataModule):
    """Subsets given as {name: {root, classes, and any SubsetLayout field}}; null entries are left out.

    `layout`: the SubsetLayout fields shared by all subsets (a subset's own keys win).
    `batch_size`: per process; split over the subsets in proportion to their training sizes.
    `batch_split`: "proportional" splits the global batch (batch_size x processes) by largest
    remainders, every subset at least one sample per process; "official" truncates each process's
    share with int() as the official script (fewer than batch_size samples per step).
    `steps_per_epoch`: null for ceil(N / (batch_size * world size)), N = all training images.
    `cache`: {enabled, dir, codec, block, png_level, jpeg_quality, workers}; the block cache
    (lossless by default) that lets a crop decode only the pixels under it.
    `on_error`: "raise" stops at bad files with a list of them; "skip" leaves them out and logs a count.
    `generate`: write generated scenes into each subset's root in `prepare_data` (the demo data).
    `val_mode`: "crop" validates on `val_transform`'s centre crops (paper A.5); "whole" on whole
    images, one per batch, for sliding-window inference (the task's `inference`, samrs.evaluate);
    "tiles" on the tiles of the split as cut (the official test protocol): a SAMRS subset's images
    are its tiles already, so here it is "whole"; the fine-tuning datasets cut their scenes.
    `val_split`: the split validated on (samrs.evaluate split=...).
    `bands`: multispectral subsets (GeoTIFFs written with output.bands=all): N for their first N
    bands, or a list of 1-based band indexes, read in their data type (8 or 16 bits) into the
    cache and the transforms (`max_pixel_value`: what maps to 1 before normalisation; None: the data
    type's maximum); the model's backbone then takes `in_chans` = that many bands. None: 8-bit RGB.
    A subset's `classes` may be a class-list name, a list of names, or null for the list in its
    meta.json (a subset samrs labeled from your own classes).
    """

    def __init__(
        self,
        subsets: Mapping[str, Mapping[str, Any] | None],
        layout: Mapping[str, Any] | None = None,
        batch_size: int = 96,
        batch_split: str = "proportional",
        steps_per_epoch: int | None = None,
        val_batch_size: int = 8,
        num_workers: int = 4,
        val_num_workers: int | None = None,
        pin_memory: bool = True,
        seed: int | None = None,
        on_error: str = "raise",
        cache: Mapping[str, Any] | None = None,
        train_transform: Mapping[str, Any] | None = None,
        val_transform: Mapping[str, Any] | None = None,
        generate: Mapping[str, Any] | Callable[..., Any] | None = None,
        val_mode: str = "crop",
        val_split: str = "val",
        bands: int | Sequence[int] | None = None,
        max_pixel_value: float | None = None,
    ) -> None:
        super().__init__()
        # A subset set to null is left out (data.subsets.sior=null trains without SIOR).
        self.subsets = {k: dict(v) for k, v in _plain(subsets).items() if v is not None}
        if not self.subsets:
            raise ConfigError("data.subsets is empty: name at least one subset")
        if on_error not in ON_ERROR:
            raise ConfigError(f"data.on_error={on_error!r}; choose one of {', '.join(ON_ERROR)}")
        if batch_split not in BATCH_SPLITS:
            raise ConfigError(f"data.batch_split={batch_split!r}; choose one of {', '.join(BATCH_SPLITS)}")
        self.batch_split = batch_split
        if val_mode not in VAL_MODES:
            raise ConfigError(f"data.val_mode={val_mode!r}; choose one of {', '.join(VAL_MODES)}")
        self.val_mode, self.val_split = val_mode, val_split
        shared = dict(_plain(layout) or {})
        self.layouts = {k: _layout(k, {**shared, **spec}) for k, spec in self.subsets.items()}
        self.batch_size, self.steps_per_epoch_cfg = batch_size, steps_per_epoch
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.val_num_workers = num_workers if val_num_workers is None else val_num_workers
        self.pin_memory, self.on_error = pin_memory, on_error
        self.seed = seed if seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        cache_cfg = dict(_plain(cache) or {})
        enabled, cache_dir = cache_cfg.pop("enabled", False), cache_cfg.pop("dir", None)
        self.cache_dir = cache_dir if enabled else None
        cache_workers = cache_cfg.pop("workers", None)
        self.cache_workers = num_workers if cache_workers is None else cache_workers
        self.codec = BlockCodec(**cache_cfg)
        self.read_image = read_rgb if bands is None else BandReader(_plain(bands))
        self.channels = None if bands is None else self.read_image.channels
        self.max_pixel_value = max_pixel_value
        if self.channels is not None and self.codec.codec == "jpeg":
            raise ConfigError("data.cache.codec=jpeg keeps 8-bit RGB only; multispectral data (data.bands) "
                              "needs png or raw")
        self.train_transform_cfg = dict(_plain(train_transform) or {})
        self.val_transform_cfg = dict(_plain(val_transform) or {})
        self.generate = _plain(generate)
        self.train_sets: dict[str, SegmentationDataset] = {}
        self.val_sets: dict[str, SegmentationDataset] = {}
        self.train_batch_sizes: dict[str, int] = {}  # this process's share of each step
        self.global_batch_sizes: dict[str, int] = {}  # all processes together
        self._split_world = 0  # the world size they were split for

    # ---- classes ----------------------------------------------------------------------------

    @property
    def subset_names(self) -> list[str]:
        return list(self.subsets)

    def classes_of(self, subset: str) -> SubsetClasses:
        spec = self.subsets[subset].get("classes", subset)
        if spec is None:
            return self._meta_classes(subset)
        if isinstance(spec, (list, tuple)):
            return SubsetClasses(subset, tuple(str(n) for n in spec))
        return subset_classes(spec)

    def _meta_classes(self, subset: str) -> SubsetClasses:
        """The class list (and palette) of the subset's meta.json (data.subsets.<subset>.classes=null)."""
        path = self.root_of(subset) / "meta.json"
        if not path.is_file():
            raise MissingPathError(f"{path}: not found; data.subsets.{subset}.classes=null takes the class list from "
                                   f"the meta.json samrs.label writes: point the subset's root at a labeled subset, "
                                   f"or give its classes")
        meta = json.loads(path.read_text())
        return SubsetClasses(subset, tuple(meta["classes"]), tuple(tuple(c) for c in meta.get("palette") or ()))

    @property
    def in_chans(self) -> int:
        """Bands of an image: what the backbone takes."""
        return 3 if self.channels is None else self.channels

    def _image_options(self) -> dict[str, Any]:
        """What the transforms need to know of multispectral images (nothing for 8-bit RGB)."""
        if self.channels is None:
            return {}
        return {"channels": self.channels, "max_pixel_value": self.max_pixel_value}

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: self.classes_of(k).num_classes for k in self.subsets}

    @property
    def class_names(self) -> dict[str, list[str]]:
        return {k: list(self.classes_of(k).names) for k in self.subsets}

    @property
    def metric_exclude(self) -> dict[str, list[int]]:
        """Per subset, class ids left out of the metrics' means (none for the SAMRS subsets)."""
        return {k: [] for k in self.subsets}

    # ---- files ------------------------------------------------------------------------------

    def root_of(self, subset: str) -> Path:
        return Path(self.subsets[subset]["root"])

    def cache_of(self, subset: str) -> SubsetCache | None:
        if self.cache_dir is None:
            return None
        return SubsetCache.create(self.cache_dir, subset, self.root_of(subset), self.layouts[subset],
                                  self.classes_of(subset).num_classes, self.codec, read_image=self.read_image)

    def prepare_data(self) -> None:
        """Write the demo scenes (when configured) and bring each subset's block cache up to date."""
        if callable(self.generate):  # a writer of its own (generated GeoTIFF subsets): called with each root
            for spec in self.subsets.values():
                self.generate(spec["root"])
        elif self.generate:
            from samrs.scenes.subset import write_generated_subset

            for name, spec in self.subsets.items():
                write_generated_subset(spec["root"], spec.get("classes", name), **self.generate, instead=(
                    f"To train on the subset there, pass data.generate=null (or data={name} for your {name} data); "
                    f"to generate, point data.subsets.{name}.root at an empty folder."))
        for subset in self.subsets:
            cache = self.cache_of(subset)
            if cache is not None:
                self._check_meta(subset)
                layout, root = self.layouts[subset], self.root_of(subset)
                names = [n for split in self.cached_splits() for n in layout.split_names(root, split)]
                cache.build(names, workers=self.cache_workers)

    def cached_splits(self) -> tuple[str, ...]:
        """The splits setup() reads, whose images prepare_data() caches."""
        return tuple(dict.fromkeys(("train", self.val_split)))

    def _check_meta(self, subset: str) -> None:
        """samrs' own subsets name their classes in meta.json: they must be the configured ones. And
        the images meta.json marks as the source's test split must not be in the train split."""
        meta_path = self.root_of(subset) / "meta.json"
        if not meta_path.is_file():
            return
        meta = json.loads(meta_path.read_text())
        listed = meta.get("classes")
        # classes: null takes meta.json's own list, which then agrees by definition
        expected = list(self.classes_of(subset).names) if self.subsets[subset].get("classes", subset) else listed
        if listed is not None and listed != expected:
            raise ConfigError(
                f"{meta_path}: lists {len(listed)} classes ({', '.join(listed[:3])}, ...) but data.subsets."
                f"{subset}.classes={self.subsets[subset].get('classes', subset)} has {len(expected)} "
                f"({', '.join(expected[:3])}, ...): point the subset at the right root or set its classes")
        self._check_no_test_images(subset, meta_path, meta)

    def _check_no_test_images(self, subset: str, meta_path: Path, meta: dict[str, Any]) -> None:
        """Refuse a train split holding images of the source's test split (paper A.3: SIOR pre-trains
        on DIOR's trainval images only)."""
        if "test_names" not in meta:
            if meta.get("source") is not None:
                log.warning("%s: written before samrs kept the source's test images apart (no test_names): it cannot "
                            "be checked that %s/train holds none; run its label command again to re-merge the split "
                            "files", meta_path, subset)
            return
        test = set(meta["test_names"])
        leaked = [n for n in self.layouts[subset].split_names(self.root_of(subset), "train") if n in test]
        if leaked:
            raise BadFileError(
                f"{subset}: the train split of {self.root_of(subset)} holds {len(leaked)} images that {meta_path} marks "
                f"as the source's test split (test_names; first: {leaked[0]}), which pre-training must not see. "
                f"Relabel the split files: run the label command that wrote the subset again with the same "
                f"output_dir; it labels nothing again and writes train.txt and val.txt without them, test.txt with them")

    def _names(self, subset: str, split: str) -> tuple[list[str], Any]:
        """The usable names of a split and the reader for them, after the checks (raise or skip)."""
        root, layout = self.root_of(subset), self.layouts[subset]
        names = layout.split_names(root, split)
        cache = self.cache_of(subset)
        if cache is None:
            self._check_meta(subset)
            problems = missing_files(root, layout, names)
            reader = FileReader(root, layout, self.classes_of(subset).num_classes, read_image=self.read_image)
        else:
            problems = self._cached_problems(cache, subset, split, names)
            reader = cache.reader
        self._handle(subset, split, list(problems.values()), len(names))
        return [n for n in names if n not in problems], reader

    @staticmethod
    def _cached_problems(cache: SubsetCache, subset: str, split: str, names: list[str]) -> dict[str, Problem]:
        """The problems the cache build found with `names`; an error when it has not seen them all."""
        entries = cache.manifest()
        absent = [n for n in names if n not in entries]
        if absent:
            raise RuntimeError(f"{cache.directory}: the cache lacks {len(absent)} images of {subset}/{split} "
                               f"(first: {absent[0]}); run prepare_data() before setup()")
        return problems_of(entries, names)

    def _handle(self, subset: str, split: str, problems: list[Problem], total: int) -> None:
        if not problems:
            return
        if self.on_error == "raise":
            first = "; ".join(f"{p.path}: {p.message}" for p in problems[:3])
            more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
            advice = ("none is usable: check the subset's root and layout (data.subsets / data.root)"
                      if len(problems) == total else "fix or remove them, or set data.on_error=skip to train without them")
            raise BadFileError(f"{subset}/{split}: {len(problems)} of {total} images are unusable ({first}{more}); "
                               f"{advice}")
        listed = "\n  ".join(f"{p.path}: {p.message}" for p in problems[:20])
        listed += "\n  ..." if len(problems) > 20 else ""
        log.warning("%s/%s: skipping %d of %d images:\n  %s", subset, split, len(problems), total, listed)

    def _dataset(self, subset: str, split: str, transform) -> SegmentationDataset:
        names, reader = self._names(subset, split)
        if not names:
            raise BadFileError(f"{subset}/{split}: no usable images left")
        return SegmentationDataset(names, reader, transform, subset=subset)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None) and not self.train_sets:
            tf = train_transform(**self.train_transform_cfg, **self._image_options())
            self.train_sets = {k: self._dataset(k, "train", tf) for k in self.subsets}
            self._split_batch()
        if stage in ("fit", "validate", None) and not self.val_sets:
            if self.val_mode in ("whole", "tiles"):
                tf = whole_transform(**{k: v for k, v in self.val_transform_cfg.items() if k in ("mean", "std")},
                                     **self._image_options())
            else:
                tf = val_transform(**self.val_transform_cfg, **self._image_options())
            self.val_sets = {k: self._dataset(k, self.val_split, tf) for k in self.subsets}

    # ---- loaders ----------------------------------------------------------------------------

    def _replicas(self) -> tuple[int, int]:
        """(world size, global rank): the trainer's, else torch.distributed's, else (1, 0)."""
        if self.trainer is not None:
            return self.trainer.world_size, self.trainer.global_rank
        if torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _split_batch(self) -> None:
        """Split the global batch (per-process batch x processes) over the subsets once, then deal
        each subset's part out to the processes: together they draw what one process with the
        global batch would (every process gets at least one sample of every subset)."""
        world, rank = self._replicas()
        self._split_world = world
        sizes = {k: len(v) for k, v in self.train_sets.items()}
        if self.batch_split == "official":
            self.global_batch_sizes = {k: b * world for k, b in truncated_batch_sizes(self.batch_size, sizes).items()}
        else:
            self.global_batch_sizes = proportional_batch_sizes(self.batch_size * world, sizes, minimum=world)
        shares = rank_shares(list(self.global_batch_sizes.values()), world)[rank]
        self.train_batch_sizes = dict(zip(self.global_batch_sizes, shares.tolist()))

    def steps_per_epoch(self, world_size: int = 1) -> int:
        sizes = [len(d) for d in self.train_sets.values()]
        return self.steps_per_epoch_cfg or epoch_steps(sizes, self.batch_size, world_size)

    def _generator(self) -> torch.Generator:
        """A loader's own generator: its workers' base seeds then come from it, not from the global
        torch stream, so loading draws nothing from the stream dropout and the like use (a resumed
        run draws the same numbers there as the interrupted one)."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader(self) -> DataLoader:
        world, rank = self._replicas()
        if self._split_world != world:
            self._split_batch()  # setup() ran before the world size was known
        data = MultiSubsetDataset(self.train_sets, seed=self.seed)
        steps = self.steps_per_epoch(world)
        sampler = ProportionalSampler(data.sizes, list(self.global_batch_sizes.values()), steps, world, rank, self.seed)
        self._log_epoch(data.sizes, steps, world, sampler)
        loader = ResumableLoader(
            data, batch_size=sampler.batch_size, sampler=sampler, collate_fn=collate_by_subset,
            num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=self.num_workers > 0,
            worker_init_fn=WorkerInit(), generator=self._generator(),
        )
        if self.trainer is not None:
            loader.progress = self._training_progress
        return loader

    def _training_progress(self) -> tuple[int, int]:
        """(batches of this epoch the fit loop consumed, batches per epoch): Lightning's counters."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.ready, self.trainer.num_training_batches

    def _log_epoch(self, sizes: list[int], steps: int, world: int, sampler: ProportionalSampler) -> None:
        batch = sum(self.global_batch_sizes.values())
        parts = ", ".join(
            f"{k} {g} ({steps * g / n:.2f} passes of {n})" for (k, g), n in zip(self.global_batch_sizes.items(), sizes))
        log.info("training epoch: %d steps x batch %d (%d per process x %d processes) = %d samples; per step: %s",
                 steps, batch, batch // world, world, steps * batch, parts)
        if world > 1:
            low, high = sampler.shares.min(axis=0), sampler.shares.max(axis=0)
            log.info("each process takes per step: %s", ", ".join(
                f"{k} {lo}" if lo == hi else f"{k} {lo}-{hi}" for k, lo, hi in zip(self.global_batch_sizes, low, high)))
        for (k, g), n in zip(self.global_batch_sizes.items(), sizes):
            if g > n:
                log.warning("%s: one step draws %d samples but the subset has %d; samples repeat within a step", k, g, n)

    def val_dataloader(self) -> list[DataLoader]:
        world, rank = self._replicas()
        # whole images (and the tiles at a scene's border) differ in size: one per batch
        batch_size = self.val_batch_size if self.val_mode == "crop" else 1
        return [
            DataLoader(ds, batch_size=batch_size, sampler=ShardSampler(len(ds), world, rank),
                       num_workers=self.val_num_workers, pin_memory=self.pin_memory, worker_init_fn=WorkerInit(),
                       generator=self._generator())
            for ds in self.val_sets.values()
        ]
