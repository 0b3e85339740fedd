"""Train a segmentation model: python -m samrs.train experiment=NAME [overrides].

Pre-training on SAMRS subsets (one head per subset) and fine-tuning are both this job; the
experiment config decides which. Returns the optimised metric for Hydra sweepers.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from samrs.callbacks import ExportMAE, ExportPretrained
from samrs.errors import ConfigError, MissingPathError
from samrs.inference import protocol_label
from samrs.metrics import write_scores
from samrs.models import check_input_sizes
from samrs.utils.hydra import samrs_main
from samrs.utils.loggers import continue_csv_log, previous_wandb_id
from samrs.utils.logging import get_logger
from samrs.utils.runs import (
    apply_extras,
    check_resume_checkpoint,
    instantiate_callbacks,
    instantiate_loggers,
    keep_previous_checkpoints,
    resolve_ckpt_path,
)

log = get_logger(__name__)


def segments(cfg: DictConfig) -> bool:
    """Whether the model is a segmentor with heads per subset (not MAE pre-training)."""
    return "heads" in (cfg.model.get("net") or {})


def fill_heads_from_data(cfg: DictConfig, datamodule: Any) -> None:
    """Heads and class names default to the data's subsets; given ones must agree with them."""
    if not segments(cfg):
        return
    net = cfg.model.net
    with open_dict(cfg):
        if net.get("heads") is None:
            net.heads = datamodule.num_classes
        else:
            heads = OmegaConf.to_container(net.heads)
            if heads != datamodule.num_classes:
                raise ConfigError(
                    f"model.net.heads={heads} does not match the data's subsets and class counts "
                    f"{datamodule.num_classes}; set model.net.heads=null to take them from the data"
                )
        fill_in_chans(net, getattr(datamodule, "in_chans", 3))
        if cfg.model.get("class_names") is None:
            cfg.model.class_names = datamodule.class_names
        if "metric_exclude" in cfg.model and cfg.model.metric_exclude is None:  # (the semantic task's)
            cfg.model.metric_exclude = datamodule.metric_exclude


def fill_in_chans(net: DictConfig, in_chans: int) -> None:
    """The backbone takes as many bands as the data has (data.bands); a given in_chans must agree."""
    given = net.backbone.get("in_chans")
    if given is None:
        if in_chans != 3:
            net.backbone.in_chans = in_chans
    elif int(given) != in_chans:
        raise ConfigError(f"model.net.backbone.in_chans={given} but the data's images have {in_chans} bands "
                          f"(data.bands); leave in_chans unset to take it from the data")


def check_start(cfg: DictConfig) -> None:
    """The weight file a `start` names must exist (before data or model are built)."""
    start = cfg.get("start")
    path = start.get("checkpoint") if start is not None else None
    if path and not Path(path).is_file():
        pre_start = start.key.removesuffix("sep").rstrip("_")  # imp_sep -> imp, sep -> ""
        experiment = f"sep_{cfg.get('model_key')}{cfg.get('sep_run_suffix') or ''}"  # sep_r50_upernet_debug
        hint = (f"; run the pre-training first (python -m samrs.train experiment={experiment}"
                f"{f' start={pre_start}' if pre_start else ''})" if start.key.endswith("sep") else "")
        if start.key == "official_sep":  # a released file, not one of ours
            hint = "; give a released SEP file (docs/models.md, 'Official SAMRS weight files')"
        if start.get("made_by"):  # a start written by another job (start=samrs_mae: the MAE pre-training)
            hint = f"; run {start.made_by} first, or give a released file"
        raise MissingPathError(f"start={start.key}: no weight file {path} (set start.checkpoint=FILE{hint})")


# Crop and window sizes the model must take, checked before training (samrs.models.check_input_sizes).
CROP_SIZE_KEYS = ("data.train_transform.crop_size", "data.val_transform.crop_size", "model.inference.window")


def crop_sizes(cfg: DictConfig) -> dict[str, int]:
    return {k: int(v) for k in CROP_SIZE_KEYS if (v := OmegaConf.select(cfg, k)) is not None}


def continue_wandb_run(cfg: DictConfig) -> None:
    """On resume, the wandb logger continues the run directory's latest wandb run unless an id is given."""
    wandb_cfg = OmegaConf.select(cfg, "logger.wandb")
    if wandb_cfg is not None and not wandb_cfg.get("id"):
        run_id = previous_wandb_id(cfg.paths.output_dir)
        if run_id:
            wandb_cfg.id = run_id
            log.info("resuming: wandb run %s continues (set logger.wandb.id to choose another)", run_id)


def log_hyperparameters(cfg: DictConfig, model: L.LightningModule, loggers: list) -> None:
    """Send the resolved config and parameter counts (in all, trainable, per part) to every logger."""
    params = {
        "model/params/total": sum(p.numel() for p in model.parameters()),
        "model/params/trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    for name, part in model.net.named_children():
        params[f"model/params/{name}"] = sum(p.numel() for p in part.parameters())
    hparams = {**OmegaConf.to_container(cfg, resolve=True), **params}
    for logger in loggers:
        logger.log_hyperparams(hparams)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate data, model, callbacks, loggers and trainer from `cfg`, fit, return metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = cfg.paths.output_dir
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    check_start(cfg)
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    fill_heads_from_data(cfg, datamodule)
    model: L.LightningModule = hydra.utils.instantiate(cfg.model)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    # Configuration errors surface here, before any training step (or data worker) runs.
    if segments(cfg):
        check_input_sizes(model.net, crop_sizes(cfg))
    if ckpt_path is not None:
        check_resume_checkpoint(model, ckpt_path)
        continue_wandb_run(cfg)
        continue_csv_log(cfg, ckpt_path)
    elif cfg.get("train"):  # only once the run is sure to start: a refused one leaves the earlier run whole
        rank_zero_only(keep_previous_checkpoints)(output_dir)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    log_hyperparameters(cfg, model, loggers)

    if cfg.get("train"):
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    if cfg.get("validate_best") and trainer.checkpoint_callback and trainer.checkpoint_callback.best_model_path:
        trainer.validate(model, datamodule=datamodule, ckpt_path="best")
    scores = getattr(model, "last_val_scores", None)
    if scores and trainer.is_global_zero:  # the last validation's per-class scores (finetune_table reads them)
        write_scores(output_dir, scores, model.class_names, step=trainer.global_step,
                     checkpoint="best" if cfg.get("validate_best") else "last",
                     protocol=validation_protocol(datamodule, model))
    report(trainer, metrics)
    return metrics


def validation_protocol(datamodule: L.LightningDataModule, model: L.LightningModule) -> str:
    """The protocol of the validation scores (samrs.inference.protocol_label), for the result tables."""
    inference = getattr(model, "inference", None)
    absent = next((m.absent_classes for m in getattr(model, "val_metrics", {}).values()), None)
    return protocol_label(getattr(datamodule, "val_mode", "crop"), asdict(inference) if inference else None, absent)


# The validation scores the end-of-run report lists: the semantic task's, the instance task's means.
REPORTED = ("val/mIoU", "val/bbox_mAP", "val/segm_mAP")


@rank_zero_only
def report(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """The figures and files a user looks for at the end of a run."""
    ckpt = trainer.checkpoint_callback
    lines = [f"{k} = {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith(REPORTED)]
    if not lines and "train/loss" in metrics:  # a run without validation (MAE pre-training)
        lines.append(f"train/loss = {metrics['train/loss']:.4f}")
    if ckpt is not None:
        if ckpt.best_model_path:
            # (after ddp_spawn only the path comes back to the main process, not the score)
            score = f" ({ckpt.monitor} = {float(ckpt.best_model_score):.4f})" if ckpt.best_model_score is not None else ""
            lines.append(f"best checkpoint: {ckpt.best_model_path}{score}")
        if ckpt.last_model_path:
            lines.append(f"last checkpoint: {ckpt.last_model_path}")
    lines += [f"{cb.label}: {cb.path}" for cb in trainer.callbacks
              if isinstance(cb, (ExportPretrained, ExportMAE)) and cb.path.is_file()]
    log.info("results:\n  " + "\n  ".join(lines or ["no validation metrics"]))


@samrs_main("train")
def main(cfg: DictConfig) -> float | None:
    apply_extras(cfg)
    metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    main()
