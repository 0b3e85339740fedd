"""LightningModules: multi-head segmentation pre-training (and single-head fine-tuning), and MAE
pre-training."""

from samrs.tasks.mae import MAETask
from samrs.tasks.segmentation import SegmentationTask

__all__ = ["MAETask", "SegmentationTask"]
