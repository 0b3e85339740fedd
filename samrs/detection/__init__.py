"""Instance segmentation and detection scores: COCO box and mask AP per subset (torchmetrics),
DOTA-style rotated-box AP from predicted masks, and the evaluation of instance checkpoints."""

from samrs.detection.coco_map import InstanceAP, ap_table
from samrs.detection.rotated import rotated_iou, rotated_map, voc_ap

__all__ = ["InstanceAP", "ap_table", "rotated_iou", "rotated_map", "voc_ap"]
