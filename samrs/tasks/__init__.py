"""LightningModules: multi-head segmentation pre-training (and single-head fine-tuning), MAE
pre-training, and multi-head instance segmentation (Mask R-CNN)."""

from samrs.tasks.instance import InstanceTask
from samrs.tasks.mae import MAETask
from samrs.tasks.segmentation import SegmentationTask

__all__ = ["InstanceTask", "MAETask", "SegmentationTask"]
