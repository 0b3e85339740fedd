"""LightningModule for multi-head instance segmentation (Mask R-CNN, samrs.models.maskrcnn): a
training batch is {subset: {"image", "targets"}}, validation has one loader per subset (in the order
of the heads) and scores COCO box and mask AP per subset (samrs.detection.InstanceAP)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
from torch import nn

from samrs.detection.coco_map import SUMMARY_COLUMNS, InstanceAP
from samrs.tasks.optim import freeze
from samrs.tasks.segmentation import SegmentationTask, _plain

LOSSES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


class InstanceTask(L.LightningModule):
    """Loss = sum over subsets of torchvision's Mask R-CNN losses (RPN objectness and box regression,
    RoI classification, box regression and mask); COCO bbox / segm AP per subset, their means over
    subsets (`val/segm_mAP`, the checkpoint monitor, and `val/bbox_mAP`), and AP per class.

    `optimizer`, `scheduler`, `param_groups`, `frozen`, `compile`: as SegmentationTask's (the same
    parameter groups, per-iteration cosine and logging cadence). `metric`: keyword arguments of
    InstanceAP (`backend`, `max_detections`).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        param_groups: Mapping[str, Any] | None = None,
        frozen: Sequence[str] = (),
        class_names: Mapping[str, Sequence[str]] | None = None,
        metric: Mapping[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        scheduler, class_names, param_groups, frozen, metric = (
            _plain(v) for v in (scheduler, class_names, param_groups, frozen, metric))
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.frozen = freeze(net, list(frozen))
        self.subsets = list(net.num_classes)
        self.class_names = {k: list(v) for k, v in (class_names or {}).items()}
        self.val_ap = nn.ModuleDict({k: InstanceAP(n, **(metric or {})) for k, n in net.num_classes.items()})
        self.last_val_scores: dict[str, dict[str, Any]] = {}

    # The semantic task's optimiser and schedule, logging cadence, class names and checkpoint config.
    configure_optimizers = SegmentationTask.configure_optimizers
    _logging_step = SegmentationTask._logging_step
    class_names_of = SegmentationTask.class_names_of
    on_save_checkpoint = SegmentationTask.on_save_checkpoint

    def forward(self, images: torch.Tensor, subset: str, targets: list[dict[str, torch.Tensor]] | None = None):
        return self.net(images, subset, targets)

    def configure_model(self) -> None:
        # the backbone carries almost all of the compute; torchvision's heads have dynamic shapes
        if self.hparams.compile:
            self.net.backbone.compile(dynamic=False)

    def training_step(self, batch: Mapping[str, Mapping[str, Any]], batch_idx: int) -> torch.Tensor:
        totals, parts = {}, {}
        for subset, part in batch.items():
            losses = self.net(part["image"], subset, part["targets"])
            totals[subset] = torch.stack(list(losses.values())).sum()
            parts[f"train/loss/{subset}"] = totals[subset]
            for name, value in losses.items():
                parts[f"train/{name}/{subset}"] = value
        total = torch.stack(list(totals.values())).sum()
        if self._logging_step():
            for key, value in parts.items():
                self.log(key, value, batch_size=len(batch[key.rsplit("/", 1)[1]]["image"]))
        self.log("train/loss", total, prog_bar=True, batch_size=sum(len(p["image"]) for p in batch.values()))
        return total

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        subset = self.subsets[dataloader_idx]
        detections = self(batch["image"], subset)
        self.val_ap[subset].update(detections, batch["targets"])
        return {"detections": detections}

    def on_validation_epoch_end(self) -> None:
        self.last_val_scores = {}
        means: dict[str, list[torch.Tensor]] = {"bbox": [], "segm": []}
        for subset, metric in self.val_ap.items():
            scores = metric.scores()
            metric.reset()
            self.last_val_scores[subset] = scores
            for kind, s in scores.items():
                # values are reduced over ranks already (InstanceAP); sync_dist only quietens Lightning
                for name in SUMMARY_COLUMNS:
                    value = torch.nan_to_num(torch.tensor(s[name], dtype=torch.float32), nan=0.0)
                    self.log(f"val/{kind}_{name}/{subset}", value, sync_dist=True)
                    if name == "mAP":
                        means[kind].append(value)
                for cls, ap in zip(self.class_names_of(subset), s["AP"]):
                    self.log(f"val/{kind}_AP/{subset}/{cls}", torch.tensor(ap, dtype=torch.float32), sync_dist=True)
        for kind, values in means.items():
            self.log(f"val/{kind}_mAP", torch.stack(values).mean(), prog_bar=kind == "segm", sync_dist=True)
