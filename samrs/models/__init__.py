"""Backbones (timm), decoders (UperNet, UNet) and the multi-head segmentor."""

from samrs.models.backbone import TimmBackbone
from samrs.models.segmentor import MultiHeadSegmentor
from samrs.models.upernet import UperNetDecoder

__all__ = ["TimmBackbone", "MultiHeadSegmentor", "UperNetDecoder"]
