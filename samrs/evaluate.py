"""Evaluate a checkpoint: python -m samrs.evaluate ckpt_path=FILE [split=val] [evaluate.flip=true] [data=...].

The model is rebuilt from the config that samrs.train stored in the checkpoint; the data too, unless
the command names one. Every image of the split is evaluated whole, by sliding-window inference
(samrs.inference: `evaluate.window`, `stride`, `flip`, `scales`, ...); mmseg-style scores per
class (IoU, F1, accuracy) and their means and OA go to metrics.json and metrics.md in the run
directory, and with `evaluate.save_predictions=true` the predictions to predictions/<subset>/.
Instance checkpoints are scored by samrs.detection.evaluate (COCO AP; `evaluate.boxes=rotated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from samrs.callbacks import SavePredictions
from samrs.detection.evaluate import evaluate_instances, is_instance_run
from samrs.inference import SlidingWindow
from samrs.metrics import write_scores
from samrs.utils.hydra import samrs_main
from samrs.utils.logging import get_logger
from samrs.utils.runs import apply_extras, resolve_ckpt_path

log = get_logger(__name__)


def read_checkpoint(ckpt_path: str) -> tuple[DictConfig, dict[str, torch.Tensor]]:
    """The training config stored in a samrs checkpoint, and its state_dict (one read of the file)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    if "samrs_config" not in checkpoint:
        raise ValueError(f"{ckpt_path}: no samrs training config inside; was it written by samrs.train?")
    return OmegaConf.create(checkpoint["samrs_config"]), checkpoint["state_dict"]


def sliding_window(settings: DictConfig, train_cfg: DictConfig) -> SlidingWindow:
    """`evaluate.*` as a SlidingWindow; the window defaults to the run's inference window (fine-tuning)
    or its validation crop (pre-training)."""
    spec = {k: v for k, v in OmegaConf.to_container(settings).items() if k not in ("save_predictions", "boxes")}
    if spec.get("window") is None:
        spec["window"] = (OmegaConf.select(train_cfg, "model.inference.window")
                          or OmegaConf.select(train_cfg, "data.val_transform.crop_size"))
    if spec["window"] is None:
        raise ValueError("the checkpoint's config names no inference window nor validation crop: set evaluate.window")
    return SlidingWindow(**spec)


def untrained_model_config(model_cfg: DictConfig) -> DictConfig:
    """The model config without its starting weights: the checkpoint's weights replace them anyway, so
    no download (timm) and no pre-training file is needed to evaluate."""
    model_cfg = model_cfg.copy()
    with open_dict(model_cfg):
        model_cfg.net.pretrained = None
        model_cfg.net.backbone.pretrained = False
        model_cfg.net.backbone.checkpoint = None
    return model_cfg


def evaluate(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    train_cfg, state_dict = read_checkpoint(ckpt_path)
    if is_instance_run(train_cfg):  # an instance segmentation checkpoint: COCO AP (samrs.detection)
        return evaluate_instances(cfg, train_cfg, state_dict, ckpt_path)
    data_cfg = (cfg.data if cfg.get("data") is not None else train_cfg.data).copy()
    with open_dict(data_cfg):
        data_cfg.val_mode, data_cfg.val_split = "whole", cfg.split
    datamodule = hydra.utils.instantiate(data_cfg)
    model = hydra.utils.instantiate(untrained_model_config(train_cfg.model))
    model.load_state_dict(state_dict)
    model.inference = sliding_window(cfg.evaluate, train_cfg)
    out_dir = Path(cfg.paths.output_dir)
    callbacks = [SavePredictions(str(out_dir / "predictions"))] if cfg.evaluate.save_predictions else []
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    scores = model.last_val_scores
    write_scores(out_dir, scores, datamodule.class_names, checkpoint=ckpt_path, split=cfg.split,
                 inference=OmegaConf.to_container(cfg.evaluate), metric_exclude=datamodule.metric_exclude)
    log.info("metrics written to %s", out_dir / "metrics.md")
    return scores


@samrs_main("evaluate")
def main(cfg: DictConfig) -> None:
    apply_extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
