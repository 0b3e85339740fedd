"""Write every validation prediction as a palette PNG (class ids that viewers show in colour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch import Callback

from samrs.callbacks.images import subset_palette
from samrs.utils.io import write_png


class SavePredictions(Callback):
    """`dirpath/<subset>/<name>.png` per validated image: the predicted class ids as a palette PNG
    with the dataset's colours. Every rank writes the images it validated."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.sanity_checking or not outputs:
            return
        subset = pl_module.subset_of(batch)
        palette = subset_palette(trainer, pl_module, subset)
        for name, pred in zip(batch["name"], outputs["pred"].cpu().numpy().astype(np.uint8)):
            write_png(self.dirpath / subset / f"{name}.png", pred, palette=palette)
