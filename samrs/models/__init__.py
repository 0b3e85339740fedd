"""Backbones (timm), necks, decoders (UperNet, UNet, Mask2Former), the multi-head segmentor, the
multi-head Mask R-CNN, pre-trained weight export / loading (`load_pretrained`: a pre-training's trunk
with new classifiers; official SAMRS files: `samrs.models.official.load_official`), and the masked
autoencoder of MAE pre-training (`MaskedAutoencoder`, written in MAE's layout by `export_mae`)."""

from samrs.models import backbones  # noqa: F401  (registers the zoo backbones with timm)
from samrs.models.backbone import TimmBackbone
from samrs.models.mae import MaskedAutoencoder, export_mae
from samrs.models.maskrcnn import MultiHeadMaskRCNN
from samrs.models.neck import MultiLevelNeck
from samrs.models.segmentor import ClassifierHead, MultiHeadSegmentor, check_input_sizes
from samrs.models.unet import UNetDecoder
from samrs.models.upernet import FCNHead, UperNetDecoder
from samrs.models.weights import export_pretrained, load_pretrained, read_state_dict

__all__ = [
    "ClassifierHead",
    "FCNHead",
    "MaskedAutoencoder",
    "MultiHeadMaskRCNN",
    "MultiHeadSegmentor",
    "MultiLevelNeck",
    "TimmBackbone",
    "UNetDecoder",
    "UperNetDecoder",
    "check_input_sizes",
    "export_mae",
    "export_pretrained",
    "load_pretrained",
    "read_state_dict",
]
