"""The label job as a Lightning predict loop.

- `LabelDataset`: one item per source image. In a DataLoader worker it reads the annotation, tiles
  it, leaves out the tiles already written (resume) and decodes the image only when some remain, so
  reading overlaps the labeler. Problems travel with the item; in strict mode the first one ends it.
- `LabelingModule.predict_step` calls `labeler.label(images, records)` on a batch's tiles.
- `SubsetPredictionWriter` writes each labeled image through SubsetWriter on the rank that labeled
  it, stores each item's problems, and once every rank is done rank zero merges the subset
  (instances.json, meta.json, splits) and writes report.json.

Lightning's predict sampler gives item i to rank i % world_size without repeating items; the writer
still skips images that already have a part file, so nothing is written twice.

A windowed source (GeoTIFF scenes, samrs.sources.geo) is split finer: an item is a run of at most
`tiles_per_item` tiles of one scene (`WorkItem`), each tile read on its own, so memory grows with
the tile size and never with the scene's.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import BasePredictionWriter, ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch.utils.data import DataLoader, Dataset

from samrs.labeling.base import InstanceMask, Labeler
from samrs.labeling.overlap import POLICIES
from samrs.labeling.report import ProblemStore, make_report, nothing_labeled, summary
from samrs.labeling.writer import SubsetWriter
from samrs.sources.base import BadInputError, Problem, Source, SourceItem, raise_problem
from samrs.sources.records import ImageRecord
from samrs.sources.tiling import Tiling
from samrs.utils.io import read_rgb, remove_partial_files, write_json

SETTINGS_FILE = ".samrs_run.json"
# Labeler meta that a resumed run may change: where the checkpoint file lies and how many prompts or
# images go through the model at once (e.g. smaller after running out of memory) leave masks alone.
NOT_DECIDING = ("checkpoint", "chunk_size", "encoder_batch_size", "max_window_pixels")


class UsageError(ValueError):
    """A run the job refuses before it starts (no output_dir, a resume with other settings)."""


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


class LabelDataset(Dataset):
    """The source's items; item i gives the tiles (or the image) of source image i still to write.

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
            report(Problem(path, None, "unreadable_image", f"cannot decode the image: {err}"))
            return None
        if image.shape[:2] != (record.height, record.width):
            report(Problem(path, None, "size_mismatch", f"decoded size {image.shape[1]}x{image.shape[0]} differs "
                                                        f"from the {record.width}x{record.height} read before"))
            return None
        return image


class LabelingModule(L.LightningModule):
    """Runs the labeler on each batch; the batch stays on the host (labelers move what they need)."""

    def __init__(self, labeler: Labeler) -> None:
        super().__init__()
        self.labeler = labeler  # an nn.Module labeler (SAM) becomes a submodule and follows the device

    def predict_step(self, batch: LabelBatch) -> list[list[InstanceMask]]:
        if batch.fatal is not None:
            raise BadInputError(batch.fatal)
        if not batch.pairs:
            return []
        masks = self.labeler.label(batch.images, batch.records)
        if len(masks) != len(batch.pairs):  # an image left out would silently never be written
            raise RuntimeError(f"labeler {self.labeler.name} returned {len(masks)} mask lists for "
                               f"{len(batch.pairs)} images")
        return masks

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch


def write_labeled(writer: SubsetWriter, image: np.ndarray, record: ImageRecord, masks: Sequence[InstanceMask]) -> None:
    """One labeled image with its rotated boxes, truncation flags and place in the source image
    (and, from a windowed source, its georeferencing, valid pixels and bands)."""
    objects = [record.objects[m.object_index] for m in masks]
    georef = record.extras.get("georef")
    writer.write(
        record.name,
        image,
        masks,
        rboxes=[o.corners for o in objects],
        image_extras={"source_image": record.extras.get("source_name", record.name), "offset": list(record.offset)},
        annotation_extras=[{"truncated": bool(o.truncated), "difficult": int(o.difficult)} for o in objects],
        georef=None if georef is None else georef.shifted(*record.offset),
        valid=record.extras.get("valid"),
        bands=record.extras.get("bands"),
    )


class SubsetPredictionWriter(BasePredictionWriter):
    """Writes every labeled image on its rank; rank zero finalizes the subset after all ranks."""

    def __init__(
        self,
        writer: SubsetWriter,
        item_names: Sequence[str],
        listing_problems: Sequence[Problem],
        meta: dict[str, Any],
        strict: bool,
        source_items: int | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.writer = writer
        self.store = ProblemStore(writer.root)
        self.item_names = list(item_names)  # the keys of the job's items (WorkItem.key)
        self.source_items = len(self.item_names) if source_items is None else source_items
        self.listing_problems = list(listing_problems)
        self.meta = meta
        self.strict = strict

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        for (image, record), masks in zip(batch.pairs, prediction):
            if not self.writer.is_done(record.name):
                write_labeled(self.writer, image, record, masks)
        for item in batch.items:
            if item.name is not None:
                self.store.save(item.name, item.problems)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier("samrs_label_finalize")
        if trainer.is_global_zero:
            self.finalize(labeler_meta(pl_module.labeler))  # now, on its device: e.g. the precision it ran in

    def finalize(self, labeler: dict[str, Any]) -> dict[str, Any]:
        """Merge the subset, write report.json, print the summary; returns meta.json's content."""
        meta = self.writer.finalize({**self.meta, **labeler})
        problems = self.listing_problems + self.store.load(self.item_names)
        report = make_report(problems, meta["counts"], self.source_items, self.strict)
        write_json(self.writer.root / "report.json", report)
        print(summary(report, meta, self.writer.root))  # not logged: spawned DDP ranks lack Hydra's logging
        if not meta["counts"]["images"]:
            print(nothing_labeled(report, meta), file=sys.stderr)
        return meta


class CountsColumn(ProgressColumn):
    """Images and objects written so far, and their rates over the task's elapsed time."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        parts = []
        for unit in ("images", "objects"):
            count = task.fields.get(unit, 0)
            parts.append(f"{count} {unit} {count / elapsed if elapsed > 0 else 0.0:.1f}/s")
        return Text(" · ".join(parts), style="progress.data.speed")


class LabelProgressBar(ProgressBar):
    """Source images done on this rank, images and objects written, and their rates (rank zero)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress: Progress | None = None
        self._task = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled:
            return
        items = len(trainer.predict_dataloaders.dataset)
        total = len(range(trainer.global_rank, items, trainer.world_size))
        self._progress = Progress(
            TextColumn("[bold]labeling"), BarColumn(bar_width=10), MofNCompleteColumn(),
            CountsColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task("labeling", total=total, images=0, objects=0)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._progress is None:
            return
        fields = self._progress.tasks[0].fields
        self._progress.update(
            self._task,
            advance=len(batch.items),
            images=fields["images"] + len(batch.pairs),
            objects=fields["objects"] + sum(len(m) for m in outputs),
        )

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def labeler_meta(labeler: Labeler) -> dict[str, Any]:
    """The labeler's name and prompt, and what it says of itself (its `meta`: model, checkpoint
    hash, prompt, engine settings)."""
    meta = getattr(labeler, "meta", None)
    return {"labeler": labeler.name, "prompt": None, **((meta() if callable(meta) else meta) or {})}


def check_settings(output_dir: Path, settings: dict[str, Any]) -> None:
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
    elif rank_zero_only.rank == 0:
        write_json(path, settings)


@rank_zero_only
def prepare_output(output_dir: Path) -> None:
    """Remove what writes cut short by kill -9 left behind (rank zero, before any rank writes)."""
    removed = remove_partial_files(output_dir) if output_dir.is_dir() else 0
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
    make_trainer: Callable[..., L.Trainer] = L.Trainer,
    output_format: str = "png",
    output_bands: str = "rgb",
    tiles_per_item: int = 16,
) -> dict[str, Any] | None:
    """Label every image of `source` into a subset at `output_dir`, resuming what is there.

    `make_trainer(callbacks=..., logger=..., enable_progress_bar=...)` builds the Lightning Trainer
    (devices, strategy). `output_format`: png, geotiff, or auto (geotiff when the source's images
    have a CRS); `output_bands`: rgb (what the labeler saw) or all (a windowed source's every band);
    `tiles_per_item`: tiles of a windowed source read per item. Returns meta.json's content on rank
    zero, None on other ranks.
    """
    if overlap not in POLICIES:
        raise UsageError(f"overlap={overlap!r}: choose one of {', '.join(POLICIES)}")
    if output_bands == "all" and not source.windowed:
        raise UsageError(f"output.bands=all: source {source.name} gives 8-bit RGB images only; every band of a "
                         "raster is kept with source=geo")
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
    described = source.describe() if hasattr(source, "describe") else {}
    settings = {"source": source.name, "subset": source.classes.name, **deciding, "tiling": asdict(tiling),
                "overlap": overlap, "write_color": write_color}
    if (output_format, output_bands) != ("png", "rgb") or described:  # (earlier runs' files lack them)
        deciding_source = {k: v for k, v in described.items() if k not in ("images", "vectors")}  # data may move
        settings.update(output_format=output_format, output_bands=output_bands, source_settings=deciding_source)
    meta = {"source": source.name, "source_root": str(source.root), "tiling": asdict(tiling),
            "keep_empty": keep_empty, **({"source_settings": described} if described else {})}
    check_settings(root, settings)
    prepare_output(root)

    work = work_items(source, items, tiling, tiles_per_item)
    prediction_writer = SubsetPredictionWriter(writer, [w.key for w in work], listing_problems, meta, strict,
                                               source_items=len(items))
    if not items:  # Lightning would skip the predict loop of an empty DataLoader, and the writer's end with it
        return prediction_writer.finalize(labeler_meta(labeler)) if rank_zero_only.rank == 0 else None
    # the bar first: it stops before the writer prints the summary
    callbacks = [LabelProgressBar()] if progress else []
    callbacks.append(prediction_writer)
    trainer = make_trainer(callbacks=callbacks, logger=False, enable_progress_bar=progress)
    dataset = LabelDataset(source, work, tiling, writer, keep_empty=keep_empty, strict=strict,
                           length=trainer.world_size)  # an item for each rank, also with fewer source images
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=LabelBatch)
    trainer.predict(LabelingModule(labeler), dataloaders=loader, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return json.loads((root / "meta.json").read_text())
