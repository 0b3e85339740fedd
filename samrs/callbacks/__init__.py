"""Lightning callbacks of the training job: pre-trained weight export, validation images and
per-class score tables."""

from samrs.callbacks.export import ExportPretrained
from samrs.callbacks.images import LogValidationImages
from samrs.callbacks.tables import ValidationTables

__all__ = ["ExportPretrained", "LogValidationImages", "ValidationTables"]
