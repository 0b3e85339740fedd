"""One LightningModule for multi-head segmentation: a batch is {subset: {"image", "mask"}}."""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from samrs.classes import IGNORE_INDEX
from samrs.metrics import SegmentationMetrics


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                       min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay per iteration from each group's lr down to `min_lr`."""
    base = [g["lr"] for g in optimizer.param_groups]

    def factor(step: int, lr: float) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        floor = min_lr / lr if lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s, lr=lr: factor(s, lr) for lr in base])


def _plain(cfg: Any) -> Any:
    """Hydra configs as plain containers: checkpoints then load with torch's weights_only unpickler."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg


class SegmentationTask(L.LightningModule):
    """Loss = sum over subsets of cross-entropy (ignore 255); mIoU per subset and their mean."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        class_names: Mapping[str, Sequence[str]] | None = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        scheduler, class_names = _plain(scheduler), _plain(class_names)
        # Objects (net, optimizer factory) stay out of the checkpoint's hyper-parameters, so resuming
        # loads it with torch's weights_only unpickler; the run config is stored separately.
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.subsets = list(net.num_classes)
        self.class_names = {k: list(v) for k, v in (class_names or {}).items()}
        self.val_metrics = nn.ModuleDict({k: SegmentationMetrics(n, ignore_index) for k, n in net.num_classes.items()})

    def forward(self, x: torch.Tensor, subset: str) -> torch.Tensor:
        return self.net(x, subset)

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        losses = {}
        for subset, part in batch.items():
            logits = self(part["image"], subset)
            losses[subset] = F.cross_entropy(logits, part["mask"], ignore_index=self.hparams.ignore_index)
        total = torch.stack(list(losses.values())).sum()
        n = sum(len(part["image"]) for part in batch.values())
        for subset, loss in losses.items():
            self.log(f"train/loss/{subset}", loss, batch_size=len(batch[subset]["image"]))
        self.log("train/loss", total, prog_bar=True, batch_size=n)
        return total

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        subset = self.subsets[dataloader_idx]
        logits = self(batch["image"], subset)
        loss = F.cross_entropy(logits, batch["mask"], ignore_index=self.hparams.ignore_index)
        self.log(f"val/loss/{subset}", loss, add_dataloader_idx=False, batch_size=len(batch["image"]))
        self.val_metrics[subset].update(logits.argmax(1), batch["mask"])

    def on_validation_epoch_end(self) -> None:
        mious = []
        self.last_val_scores: dict[str, dict[str, Any]] = {}
        for subset, metric in self.val_metrics.items():
            scores = metric.compute()
            metric.reset()
            self.last_val_scores[subset] = {k: v.tolist() for k, v in scores.items()}
            miou = torch.nan_to_num(scores["mIoU"], nan=0.0).float()
            self.log(f"val/mIoU/{subset}", miou)
            mious.append(miou)
        self.log("val/mIoU", torch.stack(mious).mean(), prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The run's resolved config travels with the weights, so `samrs.evaluate ckpt_path=...` can
        # rebuild model and data without the experiment name (train.py sets it).
        if getattr(self, "run_config", None) is not None:
            checkpoint["samrs_config"] = self.run_config

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        sched_cfg = dict(self.hparams.scheduler or {})
        if not sched_cfg:
            return {"optimizer": optimizer}
        scheduler = cosine_with_warmup(optimizer, total_steps=self.trainer.estimated_stepping_batches, **sched_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
