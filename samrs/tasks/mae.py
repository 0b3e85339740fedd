"""The LightningModule of MAE pre-training (SAMRS-MAE, paper A.4), with MAE's optimiser and schedule.

MAE's recipe (the MAE and RVSA repositories' `main_pretrain.py`, which the SAMRS-MAE run used):
AdamW with betas (0.9, 0.95) and weight decay 0.05 on every weight of two or more dimensions (not
on biases and norms), the learning rate `base_lr` x total batch / 256 (total = batch per process x
processes x accumulated batches), a linear warm-up over `warmup_epochs`, then a half-cosine to
`min_lr`, set every iteration.
"""

from __future__ import annotations

from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from samrs.errors import ConfigError
from samrs.tasks.optim import cosine_with_warmup, describe_groups, param_groups
from samrs.utils.logging import get_logger

log = get_logger(__name__)


class MAETask(L.LightningModule):
    """Trains a `samrs.models.MaskedAutoencoder` (`net`) on batches {"image": (N, 3, H, W)}.

    `optimizer`: a partial optimiser (AdamW, its betas and weight_decay); its lr is set here:
    `lr` when given, else `base_lr` x total batch / 256. `warmup_epochs` (may be fractional) and
    `min_lr`: the schedule. `compile`: torch.compile the encoder and decoder blocks.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        base_lr: float = 1.5e-4,
        lr: float | None = None,
        warmup_epochs: float = 40,
        min_lr: float = 0.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer

    def configure_model(self) -> None:
        if self.hparams.compile:
            for block in [*self.net.blocks, *self.net.decoder_blocks]:
                block.compile(dynamic=False)

    def forward(self, images: torch.Tensor):
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.net(batch["image"]).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if getattr(self, "run_config", None) is not None:  # the run's resolved config (train.py sets it)
            checkpoint["samrs_config"] = self.run_config

    def total_batch_size(self) -> int:
        """Images per optimiser step over all processes: what MAE's lr scales with."""
        per_process = getattr(self.trainer.datamodule, "batch_size", None)
        if per_process is None:
            raise ConfigError("MAE's lr scales with the batch size: train with a datamodule that has batch_size "
                              "(samrs.data.mae.MAEDataModule), or set model.lr")
        return int(per_process) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def learning_rate(self) -> float:
        if self.hparams.lr is not None:
            return float(self.hparams.lr)
        total = self.total_batch_size()
        lr = self.hparams.base_lr * total / 256
        log.info("MAE lr = base_lr %.3g x total batch %d / 256 = %.3g", self.hparams.base_lr, total, lr)
        return lr

    def steps_per_epoch(self) -> float:
        """Optimiser steps in one pass over the crops."""
        trainer = self.trainer
        return max(1.0, trainer.num_training_batches / trainer.accumulate_grad_batches)

    def configure_optimizers(self) -> dict[str, Any]:
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay", 0.05)
        lr = self.learning_rate()
        groups = param_groups(self.net, lr=lr, weight_decay=weight_decay, no_decay_norm=True, no_decay_bias=True)
        log.info("optimiser parameter groups:\n%s", describe_groups(groups))
        optimizer = self.optimizer_factory(params=groups, lr=lr)
        total = self.trainer.estimated_stepping_batches  # (sets num_training_batches on the way)
        warmup = int(round(self.hparams.warmup_epochs * self.steps_per_epoch()))
        scheduler = cosine_with_warmup(optimizer, total_steps=total, warmup_steps=min(warmup, total),
                                       min_lr=self.hparams.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
