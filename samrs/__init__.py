"""samrs: SAM-labeled remote-sensing segmentation datasets, multi-head pre-training, fine-tuning."""

__version__ = "0.1.0"
