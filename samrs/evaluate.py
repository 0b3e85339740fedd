"""Evaluate a checkpoint: python -m samrs.evaluate ckpt_path=FILE [data=...].

The model is rebuilt from the config that samrs.train stored in the checkpoint; the data too, unless
the command names one. Writes per-subset, per-class scores to metrics.json and metrics.md in the run
directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from samrs.metrics import scores_table
from samrs.utils.hydra import samrs_main
from samrs.utils.io import write_json, write_text
from samrs.utils.logging import get_logger
from samrs.utils.runs import apply_extras, resolve_ckpt_path

log = get_logger(__name__)


def stored_config(ckpt_path: str) -> DictConfig:
    """The training config stored in a samrs checkpoint."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if "samrs_config" not in checkpoint:
        raise ValueError(f"{ckpt_path}: no samrs training config inside; was it written by samrs.train?")
    return OmegaConf.create(checkpoint["samrs_config"])


def evaluate(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, cfg.paths.output_dir)
    train_cfg = stored_config(ckpt_path)
    data_cfg = cfg.data if cfg.get("data") is not None else train_cfg.data
    datamodule = hydra.utils.instantiate(data_cfg)
    model = hydra.utils.instantiate(train_cfg.model)
    model.load_state_dict(torch.load(ckpt_path, map_location="cpu", weights_only=False)["state_dict"])
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    scores = model.last_val_scores
    class_names = datamodule.class_names
    out_dir = Path(cfg.paths.output_dir)
    write_json(out_dir / "metrics.json", {"checkpoint": ckpt_path, "scores": scores, "class_names": class_names})
    write_text(out_dir / "metrics.md", scores_table(scores, class_names))
    log.info("metrics written to %s", out_dir / "metrics.md")
    return scores


@samrs_main("evaluate")
def main(cfg: DictConfig) -> None:
    apply_extras(cfg)
    evaluate(cfg)


if __name__ == "__main__":
    main()
