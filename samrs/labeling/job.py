"""The label job: every source image read, tiled, labeled and written, resumably.

- `LabelDataset`: one item per source image. It reads the annotation, tiles it, leaves out the
  tiles already written (resume) and decodes the image only when some remain. Problems travel with
  the item; in strict mode the first one ends the run.
- `LabelRun`: writes each labeled image through SubsetWriter, stores each item's problems, and at
  the end merges the subset (instances.json, meta.json, splits) and writes report.json.
- Two loops drive them. A model-free labeler (polygon_fill, box_fill) in one process runs
  `label_in_process`: worker processes read and decode while the main process labels and writes,
  and neither torch nor Lightning is imported (start-up in a fraction of a second). A labeler that is
  a torch module (SAM), or a run on several processes (`trainer=ddp`), runs as a Lightning predict
  loop (`samrs.labeling.trainer_loop`), which puts the model on its device and shards the items.

Both write the same files: item order, batches and the writer are shared; the loop only decides
where the work runs.

A windowed source (GeoTIFF scenes, samrs.sources.geo) is split finer: an item is a run of at most
`tiles_per_item` tiles of one scene (`WorkItem`), each tile read on its own, so memory grows with
the tile size and never with the scene's.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections import deque
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from samrs.errors import ConfigError
from samrs.labeling.base import InstanceMask, Labeler
from samrs.labeling.overlap import POLICIES
from samrs.labeling.progress import LabelProgress
from samrs.labeling.report import ProblemStore, make_report, nothing_labeled, summary
from samrs.labeling.writer import SubsetWriter
from samrs.sources.base import STRICT_HINT, BadInputError, Problem, Source, SourceItem, raise_problem
from samrs.sources.records import ImageRecord
from samrs.sources.tiling import Tiling
from samrs.utils.io import read_rgb, remove_partial_files, write_json
from samrs.utils.workers import WorkerInit

SETTINGS_FILE = ".samrs_run.json"
# Labeler meta that a resumed run may change: where the checkpoint file lies and how many prompts or
# images go through the model at once (e.g. smaller after running out of memory) leave masks alone.
NOT_DECIDING = ("checkpoint", "chunk_size", "encoder_batch_size", "max_window_pixels")


# A run the job refuses before it starts (no output_dir, a resume with other settings).
UsageError = ConfigError


@dataclass
class ItemResult:
    """One source item as a worker delivers it: the images still to label and its problems."""

    name: str | None  # None: a placeholder item (LabelDataset's `length`)
    pairs: list[tuple[np.ndarray, ImageRecord]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fatal: Problem | None = None  # strict mode: the problem that stops the run


class LabelBatch:
    """The collated batch: the (image, record) pairs of some source items, and those items."""

    def __init__(self, items: list[ItemResult]) -> None:
        self.items = items
        self.pairs = [pair for item in items for pair in item.pairs]

    @property
    def images(self) -> list[np.ndarray]:
        return [image for image, _ in self.pairs]

    @property
    def records(self) -> list[ImageRecord]:
        return [record for _, record in self.pairs]

    @property
    def fatal(self) -> Problem | None:
        return next((item.fatal for item in self.items if item.fatal is not None), None)


@dataclass(frozen=True)
class WorkItem:
    """One item of the label job: a source image, or (windowed sources) the run of its tiles at
    `offsets`, part `part` of the image."""

    item: SourceItem
    offsets: tuple[tuple[int, int], ...] | None = None
    part: int = 0

    @property
    def key(self) -> str:
        """The name the item's problems are stored under."""
        return self.item.name if self.offsets is None else f"{self.item.name}@{self.part:05d}"


def work_items(source: Source, items: Sequence[SourceItem], tiling: Tiling, tiles_per_item: int) -> list[WorkItem]:
    """The job's items: each source image, or for a windowed source runs of `tiles_per_item` tiles."""
    if not source.windowed or tiling.size is None:
        return [WorkItem(item) for item in items]
    if tiles_per_item < 1:
        raise UsageError(f"tiles_per_item={tiles_per_item}: give 1 or more")
    out = []
    for item in items:
        offsets = tiling.windows(*source.image_size(item))
        out += [WorkItem(item, tuple(offsets[start:start + tiles_per_item]), part)
                for part, start in enumerate(range(0, len(offsets), tiles_per_item))]
    return out


def has_objects(record: ImageRecord) -> bool:
    """Whether the record holds an object of a known class (something a labeler can paint)."""
    return any(obj.class_id is not None for obj in record.objects)


class LabelDataset:
    """The source's items; item i gives the tiles (or the image) of source image i still to write.

    A map-style dataset (`len`, indexing) for torch's DataLoader and the in-process loop alike.
    With `length` above the item count, the indices past the items give empty placeholder items:
    Lightning's predict sampler refuses a rank without any item, and such a rank would never reach
    the writer's end, where every rank waits for all.
    """

    def __init__(
        self,
        source: Source,
        items: Sequence[SourceItem | WorkItem],
        tiling: Tiling,
        writer: SubsetWriter,
        keep_empty: bool = True,
        strict: bool = False,
        length: int = 0,
    ) -> None:
        self.source = source
        self.items = [item if isinstance(item, WorkItem) else WorkItem(item) for item in items]
        self.length = max(length, len(self.items))
        self.tiling = tiling
        self.writer = writer
        self.keep_empty = keep_empty
        self.strict = strict
        self.all_bands = writer.bands == "all"

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> ItemResult:
        if index >= len(self.items):
            return ItemResult(None)
        work = self.items[index]
        result = ItemResult(work.key)
        report = raise_problem if self.strict else result.problems.append
        try:
            result.pairs = self._load(work, result.problems, report)
        except BadInputError as err:
            result.fatal = err.problem
        return result

    def _load(self, work: WorkItem, problems: list[Problem], report: Callable[[Problem], None]) -> list:
        item = work.item
        record = self.source.read(item, report)
        if record is None:
            return []
        record.extras["source_split"] = item.split  # tiles inherit it: the writer keeps test images apart
        pending = []
        for tile in self.tiling.tile(record, work.offsets):
            empty = not has_objects(tile)
            keep = self.keep_empty or not empty
            if empty:  # not bad input: counted, never fatal in strict mode
                problems.append(Problem(str(record.image_path or item.name), None, "empty_image",
                                        f"{tile.name}: no object to label", "kept" if keep else "dropped"))
            if keep and not self.writer.is_done(tile.name):
                pending.append(tile)
        if not pending or record.image_path is None:  # a missing image is the reader's to report
            return []
        if self.source.windowed:
            pairs = (self._window(record, tile, report) for tile in pending)
            return [pair for pair in pairs if pair is not None]
        image = self._decode(record, report)
        return [] if image is None else [(self.tiling.crop(image, tile), tile) for tile in pending]

    def _window(self, record: ImageRecord, tile: ImageRecord, report: Callable[[Problem], None]) -> tuple | None:
        """One tile of a windowed source, read on its own; its valid mask and (output.bands=all)
        every band travel in the tile's extras to the writer."""
        try:
            pixels = self.source.read_window(record, tile.offset[0], tile.offset[1], tile.width, tile.height,
                                             self.tiling.pad_value, self.all_bands)
        except Exception as err:  # a corrupt block, a vanished file: that tile is skipped, reported
            report(Problem(str(record.image_path), None, "unreadable_image", f"{tile.name}: cannot read the window ({err})"))
            return None
        return pixels.rgb, replace(tile, extras={**tile.extras, "valid": pixels.valid, "bands": pixels.bands})

    def _decode(self, record: ImageRecord, report: Callable[[Problem], None]) -> np.ndarray | None:
        path = str(record.image_path)
        try:
            image = read_rgb(record.image_path)
        except Exception as err:  # any decoder failure (truncated file, bomb guard, bad header)
            report(Problem(path, None, "unreadable_image", _decoder_message(err, path)))
            return None
        if image.shape[:2] != (record.height, record.width):
            report(Problem(path, None, "size_mismatch", f"decoded size {image.shape[1]}x{image.shape[0]} differs "
                                                        f"from the {record.width}x{record.height} read before"))
            return None
        return image


def _decoder_message(err: Exception, path: str) -> str:
    """What the decoder said, without the file name the problem already starts with (read_rgb's
    errors name the file and say "cannot decode the image" themselves)."""
    text = str(err)
    return text[len(path) + 2:] if text.startswith(f"{path}: ") else f"cannot decode the image ({text})"


def label_batch(labeler: Labeler, batch: LabelBatch) -> list[list[InstanceMask]]:
    """The masks of a batch's images; a strict run's first problem stops here, in the main process."""
    if batch.fatal is not None:
        raise BadInputError(batch.fatal, STRICT_HINT)
    if not batch.pairs:
        return []
    masks = labeler.label(batch.images, batch.records)
    if len(masks) != len(batch.pairs):  # an image left out would silently never be written
        raise RuntimeError(f"labeler {labeler.name} returned {len(masks)} mask lists for {len(batch.pairs)} images")
    return masks


def dropped_problems(record: ImageRecord, masks: Sequence[InstanceMask]) -> list[Problem]:
    """The objects a labeler dropped (e.g. SAM 3 below min_concept_score), for report.json."""
    return [Problem(record.name, None, "labeler_dropped",
                    f"object {m.object_index} ({record.objects[m.object_index].name}): {m.dropped}", "dropped")
            for m in masks if m.dropped]


def write_labeled(writer: SubsetWriter, image: np.ndarray, record: ImageRecord, masks: Sequence[InstanceMask]) -> None:
    """One labeled image with its rotated boxes, truncation flags and place in the source image (and,
    from a windowed source, its georeferencing, valid pixels and bands); masks the labeler dropped
    are left out."""
    masks = [m for m in masks if not m.dropped]
    objects = [record.objects[m.object_index] for m in masks]
    georef = record.extras.get("georef")
    writer.write(
        record.name,
        image,
        masks,
        rboxes=[o.corners for o in objects],
        image_extras={"source_image": record.extras.get("source_name", record.name), "offset": list(record.offset),
                      "source_split": record.extras.get("source_split")},
        annotation_extras=[{"truncated": bool(o.truncated), "difficult": int(o.difficult)} for o in objects],
        georef=None if georef is None else georef.shifted(*record.offset),
        valid=record.extras.get("valid"),
        bands=record.extras.get("bands"),
    )


class LabelRun:
    """The writing side of one run: every labeled image on the process that labeled it, each item's
    problems, and at the end (rank zero, once every process is done) the merged subset."""

    def __init__(
        self,
        writer: SubsetWriter,
        items: Sequence[SourceItem],
        listing_problems: Sequence[Problem],
        meta: dict[str, Any],
        strict: bool,
        work_keys: Sequence[str] | None = None,
    ) -> None:
        self.writer = writer
        self.store = ProblemStore(writer.root)
        # the keys problems are stored under: the job's items (WorkItem.key), by default the images
        self.item_names = list(work_keys) if work_keys is not None else [item.name for item in items]
        self.source_items = len(items)
        self.source_splits = {item.name: item.split for item in items}
        self.listing_problems = list(listing_problems)
        self.meta = meta
        self.strict = strict

    def write_batch(self, batch: LabelBatch, masks: Sequence[Sequence[InstanceMask]]) -> None:
        masks_of = iter(masks)
        for item in batch.items:  # batch.pairs are the items' pairs, in order
            for image, record in item.pairs:
                image_masks = next(masks_of)
                if not self.writer.is_done(record.name):
                    write_labeled(self.writer, image, record, image_masks)
                item.problems.extend(dropped_problems(record, image_masks))
        for item in batch.items:
            if item.name is not None:
                self.store.save(item.name, item.problems)

    def finalize(self, labeler: dict[str, Any]) -> dict[str, Any]:
        """Merge the subset, write report.json, print the summary; returns meta.json's content."""
        meta = self.writer.finalize({**self.meta, **labeler}, self.source_splits)
        problems = self.listing_problems + self.store.load(self.item_names)
        report = make_report(problems, meta["counts"], self.source_items, self.strict)
        write_json(self.writer.root / "report.json", report)
        print(summary(report, meta, self.writer.root))  # not logged: spawned DDP ranks lack Hydra's logging
        if not meta["counts"]["images"]:
            print(nothing_labeled(report, meta), file=sys.stderr)
        return meta


def labeler_meta(labeler: Labeler) -> dict[str, Any]:
    """The labeler's name and prompt, and what it says of itself (its `meta`: model, checkpoint
    hash, prompt, engine settings)."""
    meta = getattr(labeler, "meta", None)
    return {"labeler": labeler.name, "prompt": None, **((meta() if callable(meta) else meta) or {})}


def needs_device(labeler: Labeler) -> bool:
    """Whether the labeler is a torch module (SAM), which Lightning puts on a device. Without torch
    imported, nothing can be one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(labeler, torch.nn.Module)


def check_settings(output_dir: Path, settings: dict[str, Any], rank_zero: bool = True) -> None:
    """A resumed run must label as the first one did: compare with the settings stored there."""
    settings = json.loads(json.dumps(settings))  # tuples and numbers as JSON gives them back
    path = output_dir / SETTINGS_FILE
    if path.is_file():
        earlier = json.loads(path.read_text())
        differ = sorted(k for k in settings.keys() | earlier.keys() if settings.get(k) != earlier.get(k))
        if differ:
            raise UsageError(
                f"{output_dir} holds images labeled with other settings ({', '.join(differ)}: "
                + "; ".join(f"{k} was {earlier.get(k)!r}, now {settings.get(k)!r}" for k in differ)
                + "). A run resumes only with the same settings: use another output_dir, or delete this one."
            )
    elif rank_zero:
        write_json(path, settings)


def prepare_output(output_dir: Path, rank_zero: bool = True) -> None:
    """Make sure the output directory can be written, and remove what writes cut short by kill -9
    left behind (rank zero, before any rank writes)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"output_dir={output_dir}: cannot create it ({err.strerror or err}); "
                         "choose a folder you can write") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise UsageError(f"output_dir={output_dir}: no permission to write there; choose a folder you can write")
    removed = remove_partial_files(output_dir) if rank_zero else 0
    if removed:
        print(f"removed {removed} partial files of an interrupted run in {output_dir}", file=sys.stderr)


def run_labeling(
    source: Source,
    labeler: Labeler,
    output_dir: str | Path,
    *,
    tiling: Tiling | None = None,
    overlap: str = "smaller_on_top",
    write_color: bool = True,
    val_fraction: float = 0.05,
    keep_empty: bool = True,
    strict: bool = False,
    batch_size: int = 1,
    num_workers: int = 0,
    progress: bool = True,
    make_trainer: Callable[..., Any] | None = None,
    output_format: str = "png",
    output_bands: str = "rgb",
    tiles_per_item: int = 16,
) -> dict[str, Any] | None:
    """Label every image of `source` into a subset at `output_dir`, resuming what is there.

    `make_trainer(callbacks=..., logger=..., enable_progress_bar=...)` builds the Lightning Trainer
    (devices, strategy) of a predict loop; None runs a model-free labeler in this process (its
    workers read and decode) and a torch-module labeler in a default Trainer. `output_format`: png,
    geotiff, or auto (geotiff when the source's images have a CRS); `output_bands`: rgb (what the
    labeler saw) or all (a windowed source's every band); `tiles_per_item`: tiles of a windowed
    source read per item. Returns meta.json's content on rank zero, None on other ranks.
    """
    if overlap not in POLICIES:
        raise UsageError(f"overlap={overlap!r}: choose one of {', '.join(POLICIES)}")
    if output_bands == "all" and not source.windowed:
        raise UsageError(f"output.bands=all: source {source.name} gives 8-bit RGB images only; every band of a "
                         "raster is kept with source=geo")
    if make_trainer is None and needs_device(labeler):
        import lightning as L

        make_trainer = L.Trainer
    rank_zero = True
    if make_trainer is not None:
        from lightning.pytorch.utilities import rank_zero_only

        rank_zero = rank_zero_only.rank == 0
    root = Path(output_dir)
    tiling = tiling or Tiling()
    listing_problems: list[Problem] = []
    items = source.items(raise_problem if strict else listing_problems.append)
    if output_format == "auto":  # known once the source has looked at its images
        output_format = "geotiff" if source.georeferenced else "png"
    try:
        writer = SubsetWriter(root, source.classes, overlap=overlap, write_color=write_color,
                              val_fraction=val_fraction, format=output_format, bands=output_bands)
    except ValueError as err:
        raise UsageError(str(err)) from None
    deciding = {k: v for k, v in labeler_meta(labeler).items() if k not in NOT_DECIDING}
    described = source.describe()
    settings = {"source": source.name, "subset": source.classes.name, **deciding, "tiling": asdict(tiling),
                "overlap": overlap, "write_color": write_color}
    if (output_format, output_bands) != ("png", "rgb") or described:  # (earlier runs' files lack them)
        deciding_source = {k: v for k, v in described.items() if k not in ("images", "vectors")}  # data may move
        settings.update(output_format=output_format, output_bands=output_bands, source_settings=deciding_source)
    meta = {"source": source.name, "source_root": str(source.root), "tiling": asdict(tiling),
            "keep_empty": keep_empty, **({"source_settings": described} if described else {})}
    prepare_output(root, rank_zero)
    check_settings(root, settings, rank_zero)

    work = work_items(source, items, tiling, tiles_per_item)
    run = LabelRun(writer, items, listing_problems, meta, strict, work_keys=[w.key for w in work])
    if not items:  # nothing to loop over (Lightning would skip the writer's end with an empty loop)
        return run.finalize(labeler_meta(labeler)) if rank_zero else None
    if make_trainer is None:
        dataset = LabelDataset(source, work, tiling, writer, keep_empty=keep_empty, strict=strict)
        return label_in_process(run, dataset, labeler, batch_size, num_workers, progress)
    from samrs.labeling.trainer_loop import label_with_trainer

    return label_with_trainer(run, source, work, tiling, labeler, make_trainer, keep_empty=keep_empty,
                              strict=strict, batch_size=batch_size, num_workers=num_workers, progress=progress)


def label_in_process(run: LabelRun, dataset: LabelDataset, labeler: Labeler, batch_size: int, num_workers: int,
                     progress: bool) -> dict[str, Any]:
    """The loop of a model-free labeler: items in order, `batch_size` source images per batch,
    read by `num_workers` worker processes (0: here) while this process labels and writes."""
    bar = LabelProgress(len(dataset)) if progress else None
    try:
        with item_stream(dataset, num_workers) as items:
            while chunk := list(islice(items, max(1, batch_size))):
                batch = LabelBatch(chunk)
                masks = label_batch(labeler, batch)
                run.write_batch(batch, masks)
                if bar is not None:
                    bar.advance(len(batch.items), len(batch.pairs), sum(len(m) for m in masks))
    finally:
        if bar is not None:
            bar.stop()
    return run.finalize(labeler_meta(labeler))


# The dataset of a worker process of `item_stream` (set once by its initializer, not sent per item).
_WORKER_DATASET: LabelDataset | None = None


def _set_worker_dataset(dataset: LabelDataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _worker_item(index: int) -> ItemResult:
    return _WORKER_DATASET[index]


@contextmanager
def item_stream(dataset: LabelDataset, num_workers: int, prefetch: int = 2) -> Iterator[Iterator[ItemResult]]:
    """The dataset's items in order; with workers, each reads and decodes ahead, at most `prefetch`
    items per worker in flight (what DataLoader's prefetch_factor bounds), so a slow writer never
    piles decoded images up in memory. Workers end with this process, however it ends."""
    if num_workers <= 0:
        yield (dataset[i] for i in range(len(dataset)))
        return
    with multiprocessing.get_context().Pool(num_workers, initializer=WorkerInit(_set_worker_dataset, dataset)) as pool:
        yield _bounded_map(pool, len(dataset), num_workers * prefetch)


def _bounded_map(pool: Any, count: int, in_flight: int) -> Iterator[ItemResult]:
    indices = iter(range(count))
    pending = deque(pool.apply_async(_worker_item, (i,)) for i in islice(indices, in_flight))
    while pending:
        result = pending.popleft().get()
        pending.extend(pool.apply_async(_worker_item, (i,)) for i in islice(indices, 1))
        yield result
