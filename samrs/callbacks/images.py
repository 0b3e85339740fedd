"""A few validation images per subset with true and predicted masks overlaid, for the loggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from samrs.classes import make_palette, subset_classes
from samrs.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from samrs.utils.io import write_png
from samrs.viz import overlay


def to_uint8_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised (N, C, H, W) float images back to (N, H, W, 3) uint8: their first three bands
    (multispectral images), or their one band as grey."""
    bands = [0, 0, 0] if images.shape[1] < 3 else [0, 1, 2]
    images = images[:, bands]
    mean_t = images.new_tensor([mean[b] for b in bands]).view(1, 3, 1, 1)
    std_t = images.new_tensor([std[b] for b in bands]).view(1, 3, 1, 1)
    pixels = ((images.float() * std_t + mean_t) * 255).clamp(0, 255).round()
    return pixels.byte().permute(0, 2, 3, 1).cpu().numpy()


def subset_palette(trainer: L.Trainer, pl_module: L.LightningModule, subset: str) -> list[tuple[int, int, int]]:
    """The colours of `subset`'s classes: the datamodule's class list when it has one (it knows a
    subset's `classes`), else the list named like the subset, else generated colours."""
    classes_of = getattr(trainer.datamodule, "classes_of", None) or subset_classes
    try:
        return list(classes_of(subset).palette)
    except KeyError:
        return make_palette(pl_module.net.num_classes[subset])


class LogValidationImages(Callback):
    """At every validation, the first `num_images` images of each subset's first batch as panels
    [image | truth | prediction]: PNG files under `dirpath/step<step>/`, native mask overlays in
    wandb, images in TensorBoard. Rank zero only; skipped in the sanity check. `mean`, `std`: the
    data's normalisation, to show the images as they were read (None: ImageNet's, the transforms' default). `max_side`: larger images (whole
    scenes of sliding-window validation) are shrunk to this side first (null: never)."""

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 dirpath: str | None = None, num_images: int = 4, alpha: float = 0.5,
                 max_side: int | None = None) -> None:
        self.dirpath = Path(dirpath) if dirpath else None
        self.num_images, self.alpha = num_images, alpha
        self.mean, self.std = tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD)
        self.max_side = max_side

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not trainer.is_global_zero or not outputs:
            return
        subset = pl_module.subset_of(batch)
        n = min(self.num_images, len(batch["image"]))
        images, truths, preds = self._shrunk(batch["image"][:n], batch["mask"][:n], outputs["pred"][:n])
        images = to_uint8_images(images, self.mean, self.std)
        truths = truths.cpu().numpy().astype(np.uint8)
        preds = preds.cpu().numpy().astype(np.uint8)
        names = list(batch.get("name", [str(i) for i in range(n)]))[:n]
        classes = pl_module.class_names_of(subset)
        palette = subset_palette(trainer, pl_module, subset)
        panels = [np.concatenate([im, overlay(im, t, palette, self.alpha, outline=False),
                                   overlay(im, p, palette, self.alpha, outline=False)], axis=1)
                  for im, t, p in zip(images, truths, preds)]
        step = trainer.global_step
        if self.dirpath is not None:
            for name, panel in zip(names, panels):
                write_png(self.dirpath / f"step{step:06d}" / subset / f"{name}.png", panel)
        labels = {i: c for i, c in enumerate(classes)}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                masks = [{"truth": {"mask_data": t, "class_labels": labels},
                          "prediction": {"mask_data": p, "class_labels": labels}} for t, p in zip(truths, preds)]
                logger.log_image(f"val/images/{subset}", list(images), masks=masks, caption=names)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_images(f"val/images/{subset}", np.stack(panels), step, dataformats="NHWC")

    def _shrunk(self, images: torch.Tensor, truths: torch.Tensor, preds: torch.Tensor):
        """Images (bilinear) and masks (nearest) with their longer side at most `max_side`."""
        side = max(images.shape[2:])
        if self.max_side is None or side <= self.max_side:
            return images, truths, preds
        size = [max(1, round(d * self.max_side / side)) for d in images.shape[2:]]
        images = torch.nn.functional.interpolate(images.float(), size=size, mode="bilinear", align_corners=False)
        truths, preds = (torch.nn.functional.interpolate(m[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
                         for m in (truths, preds))
        return images, truths, preds
