"""One LightningModule for multi-head segmentation: a training batch is {subset: {"image", "mask"}},
validation has one loader per subset, each batch naming its subset ("subset"): heads, metrics and
loaders are matched by name, never by position."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from samrs.classes import IGNORE_INDEX
from samrs.errors import ConfigError
from samrs.inference import SlidingWindow
from samrs.metrics import SegmentationMetrics
from samrs.tasks.optim import cosine_with_warmup, describe_groups, freeze, param_groups
from samrs.utils.logging import get_logger
from samrs.utils.rng import gather_rng_states, restore_rng_states

log = get_logger(__name__)


def _plain(cfg: Any) -> Any:
    """Hydra configs as plain containers: checkpoints then load with torch's weights_only unpickler."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | ListConfig) else cfg


class SegmentationTask(L.LightningModule):
    """Loss = sum over subsets of cross-entropy (ignore 255), plus `aux_loss_weight` times the
    auxiliary head's; mIoU per subset, their mean, and per-class IoU.

    `optimizer`: a partial optimiser (AdamW) whose lr and weight_decay are the base values of the
    parameter groups built by `samrs.tasks.optim.param_groups(**param_groups)`. `frozen`: regexes
    of parameter names (relative to `net`) that are not trained. `scheduler`: keyword arguments of
    `cosine_with_warmup` (per-iteration cosine to `min_lr` over the run's steps), or null for a
    constant lr. `compile`: torch.compile the backbone, neck and decoders. `metric_exclude`:
    per subset, class ids left out of the metrics' means (iSAID's background). `absent_classes`:
    "skip" leaves classes absent from labels and predictions out of the means, "zero" counts their
    IoU as 0 (the official code; samrs.metrics). `inference`: keyword
    arguments of `samrs.inference.SlidingWindow`; validation images then go through sliding-window
    inference (whole scenes of a fine-tuning set) instead of one forward pass.

    A net with a `loss(subset, out, mask)` method (set prediction: Mask2Former) computes its own loss
    terms from its `forward_subsets` outputs (they are summed and logged as `train/<term>/<subset>`)
    and turns those outputs into class scores with `semantic(out, size)`; `net(x, subset)` gives
    class scores for validation and inference either way.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Mapping[str, Any] | None = None,
        param_groups: Mapping[str, Any] | None = None,
        frozen: Sequence[str] = (),
        aux_loss_weight: float = 0.4,
        class_names: Mapping[str, Sequence[str]] | None = None,
        ignore_index: int = IGNORE_INDEX,
        compile: bool = False,
        metric_exclude: Mapping[str, Sequence[int]] | None = None,
        inference: Mapping[str, Any] | None = None,
        absent_classes: str = "skip",
    ) -> None:
        super().__init__()
        scheduler, class_names, param_groups, frozen, metric_exclude, inference = (
            _plain(v) for v in (scheduler, class_names, param_groups, frozen, metric_exclude, inference))
        # Objects (net, optimizer factory) stay out of the checkpoint's hyper-parameters, so resuming
        # loads it with torch's weights_only unpickler; the run config is stored separately.
        self.save_hyperparameters(ignore=["net", "optimizer"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.frozen = freeze(net, list(frozen))
        self.subsets = list(net.num_classes)
        self.class_names = {k: list(v) for k, v in (class_names or {}).items()}
        exclude = metric_exclude or {}
        self.val_metrics = nn.ModuleDict({k: SegmentationMetrics(n, ignore_index, exclude.get(k, ()), absent_classes)
                                          for k, n in net.num_classes.items()})
        self.inference = SlidingWindow(**inference) if inference else None
        self.last_val_scores: dict[str, dict[str, Any]] = {}

    def forward(self, x: torch.Tensor, subset: str) -> torch.Tensor:
        return self.net(x, subset)

    def class_names_of(self, subset: str) -> list[str]:
        """The class names of `subset`, or its class ids as strings when none were given."""
        return self.class_names.get(subset) or [str(i) for i in range(self.net.num_classes[subset])]

    def configure_model(self) -> None:
        # Module.compile works in place, so state_dict keys (and checkpoints) stay as they are. Static
        # shapes: a few graphs (one per subset batch size and crop), no dynamic-shape guards.
        if not self.hparams.compile:
            return
        parts = [self.net.backbone, self.net.neck]
        for name, child in self.net.named_children():
            if "decoder" in name:
                parts += list(child.values()) if isinstance(child, nn.ModuleDict) else [child]
        for part in parts:
            if part is not None:
                part.compile(dynamic=False)

    def _loss(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the labelled pixels; 0 (not NaN, as F.cross_entropy's mean gives) for
        a batch without one: sparse objects on large tiles leave whole crops ignored (255)."""
        total = F.cross_entropy(logits, mask, ignore_index=self.hparams.ignore_index, reduction="sum")
        return total / (mask != self.hparams.ignore_index).sum().clamp(min=1)

    def _logging_step(self) -> bool:
        trainer = self._trainer
        if trainer is None:
            return True
        # The same test Lightning's logger connector applies (a private counter: fall back to logging
        # every step should a Lightning release rename it).
        stepped = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", None)
        if stepped is None or trainer.fast_dev_run:
            return True
        return (stepped + 1) % max(1, trainer.log_every_n_steps) == 0

    def training_step(self, batch: Mapping[str, Mapping[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        try:
            outs = self.net.forward_subsets({k: part["image"] for k, part in batch.items()})
        except ValueError as err:  # BatchNorm on UperNet's 1x1 pooled map cannot train on one image
            if "more than 1 value per channel" not in str(err):
                raise
            sizes = {k: len(part["mask"]) for k, part in batch.items()}
            raise ConfigError(f"per-subset batch sizes {sizes}: BatchNorm needs at least 2 images of every subset per "
                              f"step; raise data.batch_size (it is split in proportion to the subset sizes), or use "
                              f"several GPUs with trainer.sync_batchnorm=true") from err
        losses, parts = {}, {}
        for subset, out in outs.items():
            mask = batch[subset]["mask"]
            if hasattr(self.net, "loss"):  # set prediction: the net matches queries to classes itself
                terms = self.net.loss(subset, out, mask)
                parts.update({f"train/{name}/{subset}": value for name, value in terms.items()})
                losses[subset] = parts[f"train/loss/{subset}"] = torch.stack(list(terms.values())).sum()
                continue
            losses[subset] = self._loss(out["out"], mask)
            if "aux" in out:
                parts[f"train/loss_aux/{subset}"] = aux = self._loss(out["aux"], mask)
                losses[subset] = losses[subset] + self.hparams.aux_loss_weight * aux
            parts[f"train/loss/{subset}"] = losses[subset]
        total = torch.stack(list(losses.values())).sum()
        # Step values reach the loggers only every log_every_n_steps; logging the per-subset parts on
        # those steps alone saves Lightning's ~1.5 ms per self.log call on all the others.
        if self._logging_step():
            for key, value in parts.items():
                self.log(key, value, batch_size=len(batch[key.rsplit("/", 1)[1]]["mask"]))
        self.log("train/loss", total, prog_bar=True, batch_size=sum(len(part["mask"]) for part in batch.values()))
        return total

    def subset_of(self, batch: Mapping[str, Any]) -> str:
        """The subset whose head a validation batch goes through: the one the batch names."""
        names = batch.get("subset")
        if names is None:
            if len(self.subsets) == 1:
                return self.subsets[0]
            raise ValueError("validation batches of a multi-head model must name their subset (a \"subset\" entry, "
                             "as SegmentationDataset(subset=...) gives); loaders are not matched to heads by position")
        subset = names if isinstance(names, str) else names[0]
        if subset not in self.net.num_classes:
            raise ValueError(f"a validation batch of subset {subset!r}, but the model's heads are "
                             f"{', '.join(self.net.num_classes)}")
        return subset

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        subset = self.subset_of(batch)
        if self.inference is not None:  # a whole scene: no loss over tens of millions of pixels
            logits = self.inference(lambda x: self(x, subset), batch["image"])
        else:
            logits, loss = self._scores_and_loss(batch["image"], batch["mask"], subset)
            self.log(f"val/loss/{subset}", loss, add_dataloader_idx=False, batch_size=len(batch["image"]),
                     sync_dist=True)
        pred = logits.argmax(1).to(batch["mask"].device)
        self.val_metrics[subset].update(pred, batch["mask"])
        return {"pred": pred}

    def _scores_and_loss(self, images: torch.Tensor, mask: torch.Tensor, subset: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores of crops and their loss: cross-entropy, or the net's own loss (set prediction)."""
        if not hasattr(self.net, "loss"):
            logits = self(images, subset)
            return logits, self._loss(logits, mask)
        out = self.net.forward_subsets({subset: images})[subset]
        loss = torch.stack(list(self.net.loss(subset, out, mask).values())).sum()
        return self.net.semantic(out, images.shape[2:]), loss

    def on_validation_epoch_end(self) -> None:
        mious = []
        self.last_val_scores = {}
        for subset, metric in self.val_metrics.items():
            scores = metric.compute()
            metric.reset()
            self.last_val_scores[subset] = {k: v.tolist() for k, v in scores.items()}
            miou = torch.nan_to_num(scores["mIoU"], nan=0.0).float()
            # Values are already reduced over ranks (torchmetrics); sync_dist only quietens Lightning.
            self.log(f"val/mIoU/{subset}", miou, sync_dist=True)
            self.log(f"val/mF1/{subset}", torch.nan_to_num(scores["mF1"], nan=0.0).float(), sync_dist=True)
            self.log(f"val/OA/{subset}", torch.nan_to_num(scores["OA"], nan=0.0).float(), sync_dist=True)
            for name, iou in zip(self.class_names_of(subset), scores["IoU"]):
                self.log(f"val/IoU/{subset}/{name}", iou.float(), sync_dist=True)
            mious.append(miou)
        self.log("val/mIoU", torch.stack(mious).mean(), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The run's resolved config travels with the weights, so `samrs.evaluate ckpt_path=...` can
        # rebuild model and data without the experiment name (train.py sets it).
        if getattr(self, "run_config", None) is not None:
            checkpoint["samrs_config"] = self.run_config
        # Every rank's random streams, so a resumed run's dropout draws what the interrupted one's would have.
        checkpoint["samrs_rng"] = gather_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("samrs_rng")

    def on_train_start(self) -> None:
        # After the restore and the sanity check (which draw nothing: eval mode, loaders with their
        # own generators), right before the first resumed step.
        states = getattr(self, "_rng_to_restore", None)
        if states:
            restore_rng_states(states, self.global_rank)
            self._rng_to_restore = None

    def configure_optimizers(self) -> dict[str, Any]:
        base = getattr(self.optimizer_factory, "keywords", {})
        groups = param_groups(self.net, lr=base.get("lr", 1e-3), weight_decay=base.get("weight_decay", 0.0),
                              **(self.hparams.param_groups or {}))
        log.info("optimiser parameter groups (%d frozen tensors):\n%s", len(self.frozen), describe_groups(groups))
        optimizer = self.optimizer_factory(params=groups)
        sched_cfg = dict(self.hparams.scheduler or {})
        if not sched_cfg:
            return {"optimizer": optimizer}
        scheduler = cosine_with_warmup(optimizer, total_steps=self.trainer.estimated_stepping_batches, **sched_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
