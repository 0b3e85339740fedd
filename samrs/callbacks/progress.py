"""Lightning's rich progress bar, with the epoch count of step-bounded runs shown sensibly and no
logger version number ("v_num: 0.000" says nothing; the run directory names the run)."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class StepAwareRichProgressBar(RichProgressBar):
    """A run bounded by `max_steps` has `max_epochs=-1`, which Lightning's bar shows as "Epoch 3/-2";
    this one shows "Epoch 3" there, and "Epoch 3/11" as before when the epochs are bounded."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = super()._get_train_description(current_epoch)
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs < 0:
            text = text.replace(f"Epoch {current_epoch}/{max_epochs - 1}", f"Epoch {current_epoch}")
        return text

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics
