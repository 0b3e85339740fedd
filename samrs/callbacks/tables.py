"""Per-class score tables after every validation (IoU of the semantic task, AP of the instance task):
a Markdown file per step, and wandb tables."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch import Callback
from lightning.pytorch.loggers import WandbLogger

from samrs.detection.coco_map import class_rows, is_instance_scores
from samrs.metrics import scores_table
from samrs.utils.io import write_text


class ValidationTables(Callback):
    """Writes `<dirpath>/val_step<step>.md` (IoU / F1 / Acc per class and subset) and logs the same
    rows as a wandb table per subset; rank zero only, not during the sanity check."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scores = getattr(pl_module, "last_val_scores", None)
        if trainer.sanity_checking or not trainer.is_global_zero or not scores:
            return
        names = pl_module.class_names
        write_text(self.dirpath / f"val_step{trainer.global_step:06d}.md", scores_table(scores, names))
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                for subset, s in scores.items():
                    classes = pl_module.class_names_of(subset)
                    if is_instance_scores(s):
                        columns, rows = class_rows(s, classes)
                    else:
                        columns = ["class", "IoU", "F1", "Acc"]
                        rows = [[c, s["IoU"][i], s["F1"][i], s["Acc"][i]] for i, c in enumerate(classes)]
                    logger.log_table(f"val/classes/{subset}", columns=columns, data=rows)
