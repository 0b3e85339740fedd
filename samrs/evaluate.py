"""Evaluate a checkpoint: python -m samrs.evaluate ckpt_path=FILE [split=val] [evaluate.protocol=sliding] [data=...].
An official SAMRS model file: python -m samrs.evaluate ckpt_path=FILE model=<config> data=<config>.

The model is rebuilt from the config that samrs.train stored in the checkpoint; the data too, unless
the command names one. `evaluate.protocol=official` (the default) scores every tile of the split as
it was cut, each on its own, with flip and averaged softmax (the official test script);
`sliding` evaluates every image whole. Both run samrs.inference.SlidingWindow (`evaluate.window`,
`stride`, `flip`, `scales`, ...); mmseg-style scores per class (IoU, F1, accuracy), their means and
OA go to metrics.json (with the protocol) and metrics.md in the run directory, and with
`evaluate.save_predictions=true` the predictions to predictions/<subset>/.
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
from samrs.errors import BadFileError, ConfigError
from samrs.inference import SlidingWindow, check_protocol, protocol_label
from samrs.metrics import check_absent_classes, percent, write_scores
from samrs.models.official import file_backbone_kwargs, is_official, official_state, read_official
from samrs.train import fill_heads_from_data
from samrs.utils.hydra import samrs_main
from samrs.utils.logging import get_logger
from samrs.utils.runs import apply_extras, discard_run_dir_on_failure, read_lightning_checkpoint, resolve_ckpt_path

log = get_logger(__name__)


def read_checkpoint(ckpt_path: str) -> tuple[DictConfig, dict[str, torch.Tensor]]:
    """The training config stored in a samrs checkpoint, and its state_dict (one read of the file)."""
    checkpoint = read_lightning_checkpoint(ckpt_path)
    if not isinstance(checkpoint, dict) or "samrs_config" not in checkpoint:
        raise BadFileError(f"{ckpt_path}: no samrs training config inside; was it written by samrs.train?")
    return OmegaConf.create(checkpoint["samrs_config"]), checkpoint["state_dict"]


def inference_settings(settings: DictConfig, train_cfg: DictConfig, data_cfg: DictConfig) -> dict[str, Any]:
    """`evaluate.*` as SlidingWindow's arguments: `flip` and `average` default to the protocol's; the
    window to the data's tile size (official protocol), the run's inference window (fine-tuning) or
    its validation crop (pre-training)."""
    spec = {k: v for k, v in OmegaConf.to_container(settings).items()
            if k not in ("save_predictions", "protocol", "absent_classes", "boxes")}
    protocol = check_protocol(settings.protocol)
    for key in ("flip", "average"):
        if spec.get(key) is None:
            spec[key] = protocol[key]
    if spec.get("window") is None:
        tile = OmegaConf.select(data_cfg, "tiling.size") if protocol["val_mode"] == "tiles" else None
        spec["window"] = tile or run_window(train_cfg, "evaluate.window")
    return spec


def run_window(train_cfg: DictConfig, key: str) -> int:
    """The window a run was trained for: its inference window (fine-tuning) or its validation crop
    (pre-training); else an error naming `key`, the setting that gives one."""
    window = (OmegaConf.select(train_cfg, "model.inference.window")
              or OmegaConf.select(train_cfg, "data.val_transform.crop_size"))
    if window is None:
        raise ConfigError(f"the checkpoint's config names no inference window nor validation crop: set {key}")
    return int(window)


def untrained_model_config(model_cfg: DictConfig) -> DictConfig:
    """The model config without its starting weights: the checkpoint's weights replace them anyway, so
    no download (timm) and no pre-training file is needed to evaluate."""
    model_cfg = model_cfg.copy()
    with open_dict(model_cfg):
        model_cfg.net.pretrained = None
        model_cfg.net.backbone.pretrained = False
        model_cfg.net.backbone.checkpoint = None
    return model_cfg


def official_train_config(cfg: DictConfig, ckpt_path: str) -> tuple[DictConfig, None]:
    """For an official SAMRS model file: the "training config" the evaluation takes its model and
    window from, composed of `model=` and `data=` (required), with the backbone's build arguments
    that follow from the file (the image size of the official ViT)."""
    if cfg.get("data") is None:
        raise ConfigError(f"{ckpt_path} is evaluated with model={cfg.model.net.backbone.name}...: name its data too "
                          f"(data=potsdam, data=isaid or data=samrs)")
    model_cfg = untrained_model_config(cfg.model)
    state = read_official(ckpt_path)
    if not is_official(state):
        raise ConfigError(f"{ckpt_path}: model= is for official SAMRS model files (encoder.*, decoder.*, semseghead*); "
                          f"a samrs checkpoint carries its own model, leave model= out")
    with open_dict(model_cfg):
        for key, value in file_backbone_kwargs(model_cfg.net.backbone.name, state).items():
            model_cfg.net.backbone.setdefault(key, value)
        if model_cfg.get("inference") is None and OmegaConf.select(cfg, "data.tiling.size") is not None:
            model_cfg.inference = {"window": cfg.data.tiling.size}  # the official test: the tile size
    return OmegaConf.create({"model": model_cfg, "data": cfg.data}), None


def official_model(train_cfg: DictConfig, ckpt_path: str, datamodule: Any) -> Any:
    """The SegmentationTask of `model=` with the data's heads, holding the official file's weights."""
    fill_heads_from_data(train_cfg, datamodule)
    model = hydra.utils.instantiate(train_cfg.model)
    model.net.load_state_dict(official_state(read_official(ckpt_path), model.net))
    log.info("evaluating the official SAMRS model %s as %s", ckpt_path, train_cfg.model.net.backbone.name)
    return model


def evaluate(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir, resuming=False)
    official = cfg.get("model") is not None  # an official SAMRS file, its architecture named by model=
    train_cfg, state_dict = official_train_config(cfg, ckpt_path) if official else read_checkpoint(ckpt_path)
    if not official and is_instance_run(train_cfg):  # an instance segmentation checkpoint: COCO AP (samrs.detection)
        return evaluate_instances(cfg, train_cfg, state_dict, ckpt_path)
    if "heads" not in (train_cfg.model.get("net") or {}):
        raise ConfigError(f"{ckpt_path}: an MAE pre-training, which segments nothing to evaluate; its mae.pth starts "
                          f"segmentation pre-training or fine-tuning (start=samrs_mae)")
    data_cfg = (cfg.data if cfg.get("data") is not None else train_cfg.data).copy()
    val_mode = check_protocol(cfg.evaluate.protocol)["val_mode"]
    with open_dict(data_cfg):
        data_cfg.val_mode, data_cfg.val_split = val_mode, cfg.split
    datamodule = hydra.utils.instantiate(data_cfg)
    if official:
        model = official_model(train_cfg, ckpt_path, datamodule)
    else:
        model = hydra.utils.instantiate(untrained_model_config(train_cfg.model))
        model.load_state_dict(state_dict)
    inference = inference_settings(cfg.evaluate, train_cfg, data_cfg)
    model.inference = SlidingWindow(**inference)
    absent = check_absent_classes(cfg.evaluate.absent_classes or check_protocol(cfg.evaluate.protocol)["absent_classes"],
                                  "evaluate.absent_classes")
    for metric in model.val_metrics.values():
        metric.absent_classes = absent
    out_dir = Path(cfg.paths.output_dir)
    callbacks = [SavePredictions(str(out_dir / "predictions"))] if cfg.evaluate.save_predictions else []
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    scores = model.last_val_scores
    protocol = protocol_label(val_mode, inference, absent)
    write_scores(out_dir, scores, datamodule.class_names, checkpoint=ckpt_path, split=cfg.split, protocol=protocol,
                 inference=inference, absent_classes=absent, metric_exclude=datamodule.metric_exclude)
    log.info("results (%s split):\n  %s\nprotocol: %s\nmetrics written to %s", cfg.split, headline(scores), protocol,
             out_dir / "metrics.md")
    return scores


def headline(scores: dict[str, dict[str, Any]]) -> str:
    """One line per subset: its mIoU, mF1 and OA in percent."""
    return "\n  ".join(f"{subset}: " + ", ".join(f"{key} {percent(s[key])}" for key in ("mIoU", "mF1", "OA") if key in s)
                       for subset, s in scores.items())


@samrs_main("evaluate")
def main(cfg: DictConfig) -> None:
    with discard_run_dir_on_failure(cfg.paths.output_dir):  # a failed evaluation leaves no empty run folder
        apply_extras(cfg)
        evaluate(cfg)


if __name__ == "__main__":
    main()
