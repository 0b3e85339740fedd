"""The label job as a Lightning predict loop: for a labeler that is a torch module (SAM, on its
device) and for runs on several processes (`trainer=ddp`).

- `LabelingModule.predict_step` labels a batch's tiles (samrs.labeling.job.label_batch).
- `SubsetPredictionWriter` writes each batch on the rank that labeled it (LabelRun) and, once every
  rank is done, lets rank zero merge the subset.
- `LabelProgressBar` shows rank zero's share.

Lightning's predict sampler gives item i to rank i % world_size without repeating items; the writer
still skips images that already have a part file, so nothing is written twice.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, ProgressBar
from torch.utils.data import DataLoader

from samrs.labeling.base import InstanceMask, Labeler
from samrs.labeling.job import LabelBatch, LabelDataset, LabelRun, WorkItem, label_batch, labeler_meta
from samrs.labeling.progress import LabelProgress
from samrs.sources.base import Source, SourceItem
from samrs.sources.tiling import Tiling
from samrs.utils.workers import WorkerInit


class LabelingModule(L.LightningModule):
    """Runs the labeler on each batch; the batch stays on the host (labelers move what they need)."""

    def __init__(self, labeler: Labeler) -> None:
        super().__init__()
        self.labeler = labeler  # an nn.Module labeler (SAM) becomes a submodule and follows the device

    def predict_step(self, batch: LabelBatch) -> list[list[InstanceMask]]:
        return label_batch(self.labeler, batch)

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch


class SubsetPredictionWriter(BasePredictionWriter):
    """Writes every labeled image on its rank; rank zero finalizes the subset after all ranks."""

    def __init__(self, run: LabelRun) -> None:
        super().__init__(write_interval="batch")
        self.run = run

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        self.run.write_batch(batch, prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.strategy.barrier("samrs_label_finalize")
        if trainer.is_global_zero:
            self.run.finalize(labeler_meta(pl_module.labeler))  # now, on its device: e.g. the precision it ran in


class LabelProgressBar(ProgressBar):
    """LabelProgress over the source images of this rank (shown on rank zero)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar: LabelProgress | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled:
            items = len(trainer.predict_dataloaders.dataset)
            self._bar = LabelProgress(len(range(trainer.global_rank, items, trainer.world_size)))

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._bar is not None:
            self._bar.advance(len(batch.items), len(batch.pairs), sum(len(m) for m in outputs))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def label_with_trainer(
    run: LabelRun,
    source: Source,
    items: Sequence[SourceItem | WorkItem],
    tiling: Tiling,
    labeler: Labeler,
    make_trainer: Callable[..., L.Trainer],
    *,
    keep_empty: bool,
    strict: bool,
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> dict[str, Any] | None:
    """Run the predict loop; returns meta.json's content on rank zero, None on other ranks."""
    # the bar first: it stops before the writer prints the summary
    callbacks = [LabelProgressBar()] if progress else []
    callbacks.append(SubsetPredictionWriter(run))
    trainer = make_trainer(callbacks=callbacks, logger=False, enable_progress_bar=progress)
    dataset = LabelDataset(source, items, tiling, run.writer, keep_empty=keep_empty, strict=strict,
                           length=trainer.world_size)  # an item for each rank, also with fewer source images
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=LabelBatch,
                        worker_init_fn=WorkerInit())
    trainer.predict(LabelingModule(labeler), dataloaders=loader, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    return json.loads((run.writer.root / "meta.json").read_text())
