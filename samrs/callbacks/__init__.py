"""Lightning callbacks of the training and evaluation jobs: pre-trained weight export (segmentation
and MAE), validation images, per-class score tables, prediction PNGs and the progress bar."""

from samrs.callbacks.export import ExportMAE, ExportPretrained
from samrs.callbacks.images import LogValidationImages
from samrs.callbacks.predictions import SavePredictions
from samrs.callbacks.progress import StepAwareRichProgressBar
from samrs.callbacks.tables import ValidationTables

__all__ = [
    "ExportMAE", "ExportPretrained", "LogValidationImages", "SavePredictions", "StepAwareRichProgressBar",
    "ValidationTables",
]
