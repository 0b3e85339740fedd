"""LightningModules: multi-head segmentation pre-training (and single-head fine-tuning), and
multi-head instance segmentation (Mask R-CNN)."""

from samrs.tasks.instance import InstanceTask
from samrs.tasks.segmentation import SegmentationTask

__all__ = ["InstanceTask", "SegmentationTask"]
