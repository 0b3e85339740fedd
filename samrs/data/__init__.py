"""Segmentation datasets, augmentation, proportional multi-subset batches and LightningDataModules."""
