"""The fine-tuning datasets (ISPRS Potsdam, iSAID): whole scenes cached once, training on their tiles,
validation on the whole scenes.

`prepare_data` decodes every scene of every split once into the block cache (labels through the
dataset's label coding: colours or mmseg ids to class ids, ignored pixels 255) and writes the tile
index of the training split (`tiles-<size>-<stride>.json`) beside it, plus the list of tiles each
`fraction` selects; `setup` reads them. A training sample is a tile (a window of its scene's
block file) through the training transform; a validation sample is a whole scene (`val_mode=whole`)
or one tile of a scene cut as the training scenes are (`val_mode=tiles`, the official test
protocol), normalised, for sliding-window inference (samrs.inference, the task's `inference`).
docs/finetune.md has the details.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from samrs.data.blocks import Window
from samrs.data.cache import SubsetCache
from samrs.data.datamodule import SAMRSDataModule, _plain
from samrs.data.labels import LabelCoding
from samrs.data.layout import SubsetLayout
from samrs.data.tiles import Tile, TileReader, check_fraction, scene_tiles, select_fraction
from samrs.errors import ConfigError, MissingPathError
from samrs.utils.io import write_json, write_text
from samrs.utils.logging import get_logger

log = get_logger(__name__)

LAYOUT_KEYS = {f.name for f in fields(SubsetLayout)} - {"split_files", "val_fraction"}


class FinetuneDataModule(SAMRSDataModule):
    """One fine-tuning dataset, as one subset named `name` (the head of the model).

    `root`, `classes` (a class list of samrs.classes), `layout`: SubsetLayout keys shared by the
    splits; `splits`: {split: {names, and any layout key}}, `names` being a split file, a list of
    scene names or a glob pattern over the image folder; `labels`: the LabelCoding of the label
    files; `exclude_from_means`: class names left out of the metrics' means (iSAID's background);
    `tiling`: {size, stride} of the training tiles; `fraction` of them (seeded by `fraction_seed`)
    is trained on. `generate`: a partial writer (samrs.scenes.finetune) called with the root and
    the split layouts in `prepare_data`, for generated data. Other arguments: SAMRSDataModule's.
    """

    def __init__(
        self,
        name: str,
        root: str,
        classes: str,
        splits: Mapping[str, Mapping[str, Any]],
        labels: Mapping[str, Any],
        tiling: Mapping[str, int],
        layout: Mapping[str, Any] | None = None,
        exclude_from_means: Sequence[str] = (),
        fraction: float = 1.0,
        fraction_seed: int = 0,
        generate: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("val_mode", "whole")
        super().__init__(subsets={name: {"root": root, "classes": classes}}, **kwargs)
        if self.cache_dir is None:
            raise ConfigError("fine-tuning tiles are windows into the block cache of the scenes: "
                              "set data.cache.enabled=true")
        self.name, self.root = name, Path(root)
        shared = dict(_plain(layout) or {})
        self.split_layouts = {split: _split_layout(split, shared, dict(spec)) for split, spec in _plain(splits).items()}
        for split in ("train", self.val_split):
            if split not in self.split_layouts:
                raise ConfigError(f"data.splits needs a {split!r} entry (its scene names and folders)")
        coding = LabelCoding(**_plain(labels))
        self.decoder = coding.decoder(self.classes_of(name))
        tiling = dict(_plain(tiling))
        self.tile_size, self.tile_stride = int(tiling["size"]), int(tiling["stride"])
        self.exclude_ids = _exclude_ids(self.classes_of(name).names, exclude_from_means, coding)
        check_fraction(fraction)
        self.fraction, self.fraction_seed = fraction, fraction_seed
        self.generator = generate

    @property
    def metric_exclude(self) -> dict[str, list[int]]:
        return {self.name: list(self.exclude_ids)}

    def split_cache(self, split: str) -> SubsetCache:
        """The block cache of a split's scenes (splits in the same folders share one)."""
        return SubsetCache.create(self.cache_dir, self.name, self.root, self.split_layouts[split],
                                  self.classes_of(self.name).num_classes, self.codec, self.decoder)

    def scene_names(self, split: str) -> list[str]:
        return self.split_layouts[split].split_names(self.root, split)

    @property
    def tile_index_path(self) -> Path:
        return self.split_cache("train").directory / f"tiles-{self.tile_size}-{self.tile_stride}.json"

    def prepare_data(self) -> None:
        """Write generated scenes (when configured), cache every scene, index the training tiles."""
        if self.generator is not None:
            self.generator(self.root, self.split_layouts)
        if not self.root.is_dir():  # else every scene of the fixed split lists is reported missing, one by one
            raise MissingPathError(f"{self.name}: no data at {self.root}; point data.root (or paths.data_dir) at "
                                   f"your copy of the dataset (docs/finetune.md), or use data={self.name}_debug "
                                   f"for generated scenes")
        by_cache: dict[Path, tuple[SubsetCache, list[str]]] = {}
        for split in self.split_layouts:
            cache = self.split_cache(split)
            by_cache.setdefault(cache.directory, (cache, []))[1].extend(self.scene_names(split))
        entries = {}
        for cache, names in by_cache.values():  # one build per directory: a build keeps only its names
            entries[cache.directory] = cache.build(names, workers=self.cache_workers)
        train = entries[self.split_cache("train").directory]
        sizes = {n: train[n]["shape"] for n in self.scene_names("train") if "shape" in train[n]}
        tiles = scene_tiles(sizes, self.tile_size, self.tile_stride)
        index = {"size": self.tile_size, "stride": self.tile_stride,
                 "tiles": [[t.name, t.scene, *t.window] for t in tiles]}
        path = self.tile_index_path
        if not path.is_file() or json.loads(path.read_text()) != index:
            write_json(path, index, indent=None)
        chosen = select_fraction(tiles, self.fraction, self.fraction_seed)
        listing = path.with_name(f"{path.stem}-fraction{self.fraction:g}-seed{self.fraction_seed}.txt")
        write_text(listing, "".join(f"{t.name}\n" for t in chosen))
        log.info("%s: %d training tiles of %d px (stride %d) from %d scenes; fraction %g: %d tiles (listed in %s)",
                 self.name, len(tiles), self.tile_size, self.tile_stride, len(sizes), self.fraction, len(chosen),
                 listing)

    def _names(self, subset: str, split: str) -> tuple[list[str], Any]:
        """Training: the tiles of the usable scenes (the chosen fraction); other splits: whole scenes,
        or all their tiles with val_mode=tiles."""
        cache = self.split_cache(split)
        names = self.scene_names(split)
        problems = self._cached_problems(cache, subset, split, names)
        self._handle(subset, split, list(problems.values()), len(names))
        usable = [n for n in names if n not in problems]
        if split != "train":
            if self.val_mode != "tiles":
                return usable, cache.reader
            entries = cache.manifest()
            tiles = validation_tiles({n: entries[n]["shape"] for n in usable}, self.tile_size, self.tile_stride)
            return [t.name for t in tiles], TileReader(cache.reader, tiles)
        path = self.tile_index_path
        if not path.is_file():
            raise RuntimeError(f"{path}: no tile index; run prepare_data() before setup()")
        kept = set(usable)
        tiles = [Tile(name, scene, Window(*window)) for name, scene, *window in json.loads(path.read_text())["tiles"]
                 if scene in kept]
        chosen = select_fraction(tiles, self.fraction, self.fraction_seed)
        return [t.name for t in chosen], TileReader(cache.reader, chosen)


def validation_tiles(sizes: Mapping[str, Sequence[int]], size: int, stride: int) -> list[Tile]:
    """The tiles of the validation scenes; a scene that is a single tile (a converted crop, a LoveDA
    image) keeps its own name, so its predictions and images are named as the scene."""
    tiles = scene_tiles(sizes, size, stride)
    counts = Counter(t.scene for t in tiles)
    return [Tile(t.scene, t.scene, t.window) if counts[t.scene] == 1 else t for t in tiles]


def _split_layout(split: str, shared: dict[str, Any], spec: dict[str, Any]) -> SubsetLayout:
    """A split's layout: the shared keys overridden by the split's own, its names as its listing."""
    if "names" not in spec:
        raise ConfigError(f"data.splits.{split} needs `names`: a split file, a list of scene names or a glob pattern")
    names = spec.pop("names")
    unknown = set(spec) - LAYOUT_KEYS
    if unknown:
        raise ConfigError(f"data.splits.{split}: unknown keys {', '.join(sorted(unknown))} (a split takes names and "
                          f"the layout keys {', '.join(sorted(LAYOUT_KEYS))})")
    return SubsetLayout(**{**shared, **spec}, split_files={split: names})


def _exclude_ids(classes: Sequence[str], exclude: Sequence[str], coding: LabelCoding) -> list[int]:
    """Ids of the excluded class names; a name the class list lacks must be one the label coding
    ignores (iSAID's background with the 15-class list), not a typo."""
    coded = set(coding.colors) | {v for v in coding.values or () if v is not None}
    unknown = [c for c in exclude if c not in classes and c not in coded]
    if unknown:
        raise ConfigError(f"data.exclude_from_means: {', '.join(unknown)} is neither a class ({', '.join(classes)}) "
                          f"nor a name of the label coding")
    return [list(classes).index(c) for c in exclude if c in classes]
