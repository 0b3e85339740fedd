"""LightningModules: multi-head segmentation pre-training (and single-head fine-tuning)."""

from samrs.tasks.segmentation import SegmentationTask

__all__ = ["SegmentationTask"]
