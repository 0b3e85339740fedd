"""`samrs.evaluate` for instance checkpoints (samrs.tasks.InstanceTask): every image of a subset's
split whole, COCO box and mask AP per subset; `evaluate.boxes=rotated` adds DOTA-style rotated-box AP
of the masks' minimum-area rectangles against the sources' rotated boxes; `evaluate.save_predictions`
writes the detections as COCO results files (results/<subset>.json: image_id, category_id, bbox,
score, segmentation as RLE, and rbox)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import hydra
import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from samrs.errors import ConfigError
from samrs.detection.rotated import mask_rbox, rotated_map
from samrs.labeling.rle import crop_to_rle
from samrs.metrics import write_scores
from samrs.utils.io import write_json
from samrs.utils.logging import get_logger

log = get_logger(__name__)

BOXES = (None, "rotated")
INSTANCE_TASK = "samrs.tasks.InstanceTask"


def is_instance_run(train_cfg: DictConfig) -> bool:
    """True for the config of an instance task's training run."""
    return OmegaConf.select(train_cfg, "model._target_") in (INSTANCE_TASK, "samrs.tasks.instance.InstanceTask")


def detection_records(det: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One image's detections as COCO results entries (class id in "category_id" until the file's ids
    replace it): box [x, y, w, h], score, the mask as RLE (encoded from its bounding rows and columns
    only) and the mask's minimum-area rectangle ("rbox", 8 corners)."""
    masks = det["masks"].cpu().numpy()
    boxes = det["boxes"].cpu().numpy().astype(np.float64)
    height, width = masks.shape[1:]
    out = []
    for mask, box, score, label in zip(masks, boxes, det["scores"].tolist(), det["labels"].tolist()):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        y0, y1 = (rows[0], rows[-1] + 1) if rows.size else (0, 0)
        x0, x1 = (cols[0], cols[-1] + 1) if cols.size else (0, 0)
        rbox = mask_rbox(mask[y0:y1, x0:x1], box - [x0, y0, x0, y0]) + np.tile([x0, y0], 4)
        out.append({
            "category_id": int(label),
            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            "score": float(score),
            "segmentation": crop_to_rle(mask[y0:y1, x0:x1], int(x0), int(y0), height, width),
            "rbox": [round(float(v), 2) for v in rbox],
        })
    return out


class CollectDetections(Callback):
    """During `trainer.validate`, keeps per subset and image the detections (`detection_records`) and
    the rotated ground truth, for the results files and rotated-box AP."""

    def __init__(self) -> None:
        self.images: dict[str, list[dict[str, Any]]] = {}

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        subset = pl_module.subsets[dataloader_idx]
        for det, target, image_id in zip(outputs["detections"], batch["targets"], batch["image_id"].tolist()):
            keep = target["iscrowd"] == 0
            self.images.setdefault(subset, []).append({
                "image_id": image_id, "detections": detection_records(det),
                "truth": {"rboxes": target["rboxes"][keep].cpu().numpy(), "labels": target["labels"][keep].cpu().numpy()},
            })

    def gathered(self) -> dict[str, list[dict[str, Any]]]:
        """Every process's images (under DDP), by subset."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.images
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, self.images)
        return {k: [img for part in parts for img in part.get(k, [])] for k in self.images}


def rotated_scores(images: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """samrs.detection.rotated's scores of the collected images of one subset."""
    dets = [{"rboxes": np.array([d["rbox"] for d in img["detections"]]).reshape(-1, 8),
             "scores": np.array([d["score"] for d in img["detections"]]),
             "labels": np.array([d["category_id"] for d in img["detections"]], np.int64)} for img in images]
    return rotated_map(dets, [img["truth"] for img in images], num_classes)


def write_results(path: Path, images: list[dict[str, Any]], category_of: Mapping[int, int]) -> None:
    """A COCO results file: the detections with the instances file's image and category ids."""
    entries = [{**d, "image_id": img["image_id"], "category_id": category_of[d["category_id"]]}
               for img in images for d in img["detections"]]
    write_json(path, entries, indent=None)


def _check_boxes(boxes: Any) -> str | None:
    if boxes not in BOXES:
        raise ConfigError(f"evaluate.boxes={boxes!r}; choose null (COCO boxes and masks) or rotated (also "
                          f"rotated-box AP from the masks)")
    return boxes


def evaluate_instances(cfg: DictConfig, train_cfg: DictConfig, state_dict: Mapping[str, torch.Tensor],
                       ckpt_path: str) -> dict[str, dict[str, Any]]:
    """Score an instance checkpoint on `cfg.split` of each subset (whole images); write metrics.json/md
    and, on request, the results files."""
    from samrs.evaluate import untrained_model_config  # (samrs.evaluate dispatches here)

    boxes = _check_boxes(cfg.evaluate.get("boxes"))
    data_cfg = (cfg.data if cfg.get("data") is not None else train_cfg.data).copy()
    with open_dict(data_cfg):
        for key in ("_target_", "instances", "min_visible"):  # a data= choice is read with its instances
            data_cfg[key] = train_cfg.data[key]
        data_cfg.val_mode, data_cfg.val_split = "whole", cfg.split
    datamodule = hydra.utils.instantiate(data_cfg)
    model = hydra.utils.instantiate(untrained_model_config(train_cfg.model))
    model.load_state_dict(state_dict)
    collect = CollectDetections() if boxes == "rotated" or cfg.evaluate.save_predictions else None
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[collect] if collect else [])
    trainer.validate(model, datamodule=datamodule, verbose=False)
    scores = model.last_val_scores
    out_dir = Path(cfg.paths.output_dir)
    if collect is not None:
        images = collect.gathered()
        if trainer.is_global_zero and boxes == "rotated":
            for subset, collected in images.items():
                scores[subset]["rotated"] = rotated_scores(collected, model.net.num_classes[subset])
        if trainer.is_global_zero and cfg.evaluate.save_predictions:
            category_ids = datamodule.category_ids()
            for subset, collected in images.items():
                write_results(out_dir / "results" / f"{subset}.json", collected, category_ids[subset])
            log.info("COCO results files written to %s", out_dir / "results")
    if trainer.is_global_zero:
        write_scores(out_dir, scores, datamodule.class_names, checkpoint=ckpt_path, split=cfg.split, boxes=boxes)
        log.info("results (%s split):\n  %s\nmetrics written to %s", cfg.split, instance_headline(scores),
                 out_dir / "metrics.md")
    return scores


def instance_headline(scores: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per subset: box and mask mAP and AP50 in percent (and rotated-box mAP when scored)."""
    def part(name: str, values: Mapping[str, Any]) -> str:
        keys = ("mAP_voc07", "mAP_voc12") if name == "rotated" else ("mAP", "AP50")
        return f"{name} " + " / ".join(f"{k} {100 * float(values[k]):.2f}" for k in keys if k in values)

    return "\n  ".join(f"{subset}: " + ", ".join(part(k, s[k]) for k in ("bbox", "segm", "rotated") if k in s)
                        for subset, s in scores.items())
