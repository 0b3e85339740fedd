"""Multi-head Mask R-CNN: one backbone, FPN, RPN and RoI feature heads shared by every subset, one
box classifier/regressor and one mask predictor per subset (the SEP recipe of SAMRS, for instances).

Every part is torchvision's (FeaturePyramidNetwork, AnchorGenerator, RPNHead, RegionProposalNetwork,
MultiScaleRoIAlign, TwoMLPHead, MaskRCNNHeads, RoIHeads and their losses); samrs adds the timm
backbone in front, the per-subset predictors behind torchvision's RoIHeads (`SubsetPredictors`),
and its own batching: images arrive normalised and at their final size (the data pipeline scales
and crops), so nothing is resized, only padded to a multiple of the largest stride.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads, paste_masks_in_image
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from samrs.errors import BadFileError, ConfigError
from samrs.models.weights import describe_mismatch, read_state_dict
from samrs.utils.logging import get_logger

log = get_logger(__name__)

LEVELS = ("0", "1", "2", "3")  # FPN outputs pooled by RoIAlign; "pool" (stride 64) feeds the RPN only
RPN_DEFAULTS = {"fg_iou_thresh": 0.7, "bg_iou_thresh": 0.3, "batch_size_per_image": 256, "positive_fraction": 0.5,
                "pre_nms_top_n": {"training": 2000, "testing": 1000},
                "post_nms_top_n": {"training": 2000, "testing": 1000}, "nms_thresh": 0.7, "score_thresh": 0.0}
ROI_DEFAULTS = {"fg_iou_thresh": 0.5, "bg_iou_thresh": 0.5, "batch_size_per_image": 512, "positive_fraction": 0.25,
                "bbox_reg_weights": None, "score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 100}
# parts of the model a start file may fill; the per-subset predictors never come from one
START_PARTS = ("backbone", "neck", "fpn", "rpn", "roi_heads")


class SubsetPredictors(nn.ModuleDict):
    """One predictor per subset behind one module: torchvision's RoIHeads calls `box_predictor(x)`
    and `mask_predictor(x)`, which go to the predictor of the subset `active` names."""

    def __init__(self, predictors: Mapping[str, nn.Module]) -> None:
        super().__init__(predictors)
        self.active: str | None = None

    def forward(self, x: torch.Tensor) -> Any:
        if self.active is None:
            raise RuntimeError("no subset chosen for the per-subset predictors (MultiHeadRoIHeads sets it)")
        return self[self.active](x)


class MultiHeadRoIHeads(RoIHeads):
    """torchvision's RoIHeads (sampling, losses, post-processing unchanged) whose box and mask
    predictors are `SubsetPredictors`: `forward(..., subset=k)` runs subset k's."""

    def forward(self, features, proposals, image_shapes, targets=None, subset: str | None = None):
        self.box_predictor.active = self.mask_predictor.active = subset
        try:
            return super().forward(features, proposals, image_shapes, targets)
        finally:
            self.box_predictor.active = self.mask_predictor.active = None


class MultiHeadMaskRCNN(nn.Module):
    """backbone [-> neck] -> FPN -> RPN -> RoI heads -> predictors[subset].

    `backbone`: a TimmBackbone (4 levels, strides 4..32); `neck`: a factory taking `in_channels` and
    `strides` (ViT's MultiLevelNeck), or None. `heads`: subset -> class count (the class ids of the
    data; torchvision's background class 0 is added inside). `anchor_sizes`: one size per FPN level
    (strides 4, 8, 16, 32, 64), each with every `aspect_ratios`. `rpn`, `roi`: keyword arguments of
    torchvision's RegionProposalNetwork and RoIHeads over their defaults (RPN_DEFAULTS, ROI_DEFAULTS).
    `mask_threshold`: mask probability above which a pixel belongs to a detection. `norm_eval`: keep
    the backbone's BatchNorm layers in eval mode in training (running statistics of the start weights,
    as mmdet's `norm_eval` for ImageNet-started ResNets: detection batches are small).
    `pretrained`: a start file (see `load_start`); `pretrained_parts`: what to take from it.

    Training: `forward(images, subset, targets)` -> torchvision's losses (loss_objectness,
    loss_rpn_box_reg, loss_classifier, loss_box_reg, loss_mask). Evaluation: `forward(images, subset)`
    -> per image {"boxes" (N, 4), "labels" (class ids), "scores", "masks" (N, H, W) bool}.
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: Mapping[str, int],
        neck: Callable[..., nn.Module] | None = None,
        fpn_channels: int = 256,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn: Mapping[str, Any] | None = None,
        roi: Mapping[str, Any] | None = None,
        representation_size: int = 1024,
        mask_layers: Sequence[int] = (256, 256, 256, 256),
        mask_dim_reduced: int = 256,
        mask_threshold: float = 0.5,
        norm_eval: bool = False,
        pretrained: str | None = None,
        pretrained_parts: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("Mask R-CNN needs at least one head (subset name -> class count)")
        if len(anchor_sizes) != len(LEVELS) + 1:
            raise ConfigError(f"anchor_sizes: one size per FPN level (strides 4, 8, 16, 32, 64), got {list(anchor_sizes)}")
        self.backbone = backbone
        self.neck = neck(in_channels=backbone.channels, strides=backbone.strides) if neck else None
        in_channels = self.neck.channels if self.neck else backbone.channels
        self.stride = max(self.neck.strides if self.neck else backbone.strides)  # inputs are padded to a multiple
        self.fpn = FeaturePyramidNetwork(list(in_channels), fpn_channels, extra_blocks=LastLevelMaxPool())
        anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(aspect_ratios),) * len(anchor_sizes))
        self.rpn = RegionProposalNetwork(anchors, RPNHead(fpn_channels, anchors.num_anchors_per_location()[0]),
                                         **{**RPN_DEFAULTS, **(rpn or {})})
        mask_layers = list(mask_layers)
        self.roi_heads = MultiHeadRoIHeads(
            box_roi_pool=MultiScaleRoIAlign(list(LEVELS), output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(fpn_channels * 7 * 7, representation_size),
            box_predictor=SubsetPredictors({k: FastRCNNPredictor(representation_size, int(n) + 1)
                                            for k, n in heads.items()}),
            mask_roi_pool=MultiScaleRoIAlign(list(LEVELS), output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(fpn_channels, mask_layers, dilation=1),
            mask_predictor=SubsetPredictors({k: MaskRCNNPredictor(mask_layers[-1], mask_dim_reduced, int(n) + 1)
                                             for k, n in heads.items()}),
            **{**ROI_DEFAULTS, **(roi or {})},
        )
        self.mask_threshold, self.norm_eval = mask_threshold, norm_eval
        if pretrained:
            load_start(self, pretrained, pretrained_parts)

    def train(self, mode: bool = True) -> MultiHeadMaskRCNN:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.backbone.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: p.cls_score.out_features - 1 for k, p in self.roi_heads.box_predictor.items()}

    @property
    def heads(self) -> dict[str, int]:
        return self.num_classes

    def features(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """FPN levels "0".."3" (strides 4..32) and "pool" (64) of a padded batch."""
        feats = self.backbone(images)
        if self.neck is not None:
            feats = self.neck(feats)
        return self.fpn(OrderedDict(zip(LEVELS, feats)))

    def _batch(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None):
        """Pad the batch to a multiple of the largest stride; shift class ids by torchvision's background;
        leave crowd regions out of training (COCO's rule)."""
        h, w = images.shape[-2:]
        pad_h, pad_w = -h % self.stride, -w % self.stride
        padded = F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
        if targets is not None:
            keep = [t["iscrowd"] == 0 if "iscrowd" in t else slice(None) for t in targets]
            targets = [{"boxes": t["boxes"][k], "labels": t["labels"][k] + 1, "masks": t["masks"][k]}
                       for t, k in zip(targets, keep)]
        return ImageList(padded, [(h, w)] * len(images)), targets

    def forward(self, images: torch.Tensor, subset: str, targets: list[dict[str, torch.Tensor]] | None = None):
        if subset not in self.roi_heads.box_predictor:
            raise KeyError(f"no head for subset {subset!r}; heads: {', '.join(self.num_classes)}")
        if self.training and targets is None:
            raise ValueError("Mask R-CNN needs targets in training mode")
        image_list, targets = self._batch(images, targets)
        feats = self.features(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, feats, targets)
        detections, roi_losses = self.roi_heads(feats, proposals, image_list.image_sizes, targets, subset=subset)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return [self._finish(d, size) for d, size in zip(detections, image_list.image_sizes)]

    def _finish(self, det: dict[str, torch.Tensor], size: tuple[int, int], chunk: int = 32) -> dict[str, torch.Tensor]:
        """Class ids back to the data's, mask probabilities (28 x 28 per box) pasted into the image and
        thresholded, a chunk of detections at a time (full-size float masks of hundreds of detections
        would take gigabytes)."""
        probs, boxes = det["masks"], det["boxes"]
        masks = torch.zeros((len(boxes), *size), dtype=torch.bool, device=boxes.device)
        for i in range(0, len(boxes), chunk):
            masks[i:i + chunk] = paste_masks_in_image(probs[i:i + chunk], boxes[i:i + chunk], size)[:, 0] > self.mask_threshold
        return {"boxes": boxes, "labels": det["labels"] - 1, "scores": det["scores"], "masks": masks}


# ---- starting weights ------------------------------------------------------------------------

def load_start(net: MultiHeadMaskRCNN, path: str, parts: Sequence[str] | None = None) -> list[str]:
    """Start `net` from a weight file; returns the parts loaded. Anything that does not fit is an
    error naming the keys.

    - a SEP pre-training (`pretrained.pt` of samrs.train, its Lightning checkpoint, a bare state_dict):
      its backbone (and ViT neck). Its decoder is a semantic decoder, which Mask R-CNN has no place
      for: FPN, RPN and RoI heads start as initialised, and the log says so.
    - an instance run's checkpoint: also `fpn`, `rpn`, `roi_heads` when `parts` names them (the
      shared RoI feature heads; the per-subset predictors never load).
    - an official SAMRS model file (`encoder.*`, `semseghead*`): its encoder as the backbone.
    """
    state, meta = read_state_dict(path)
    if meta.get("official"):  # its encoder, converted as samrs.models.official converts the zoo's
        from samrs.models.official import official_backbone_state

        encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        try:
            state = official_backbone_state(encoder, net.backbone)
        except ValueError as err:
            raise BadFileError(f"{path} (an official SAMRS model): {err}. Build the backbone the file was trained "
                               f"with (model.net.backbone).") from None
        chosen, origin = ["backbone"], "an official SAMRS model"
    else:
        present = {k.split(".", 1)[0] for k in state}
        chosen = list(parts) if parts is not None else [p for p in ("backbone", "neck")
                                                          if p in present and getattr(net, p, None) is not None]
        unknown = sorted(set(chosen) - set(START_PARTS))
        if unknown:
            raise ConfigError(f"pretrained_parts {unknown}: choose among {', '.join(START_PARTS)}")
        origin = f"backbone {meta['backbone']}" if meta.get("backbone") else "its backbone"
        if "decoder" in present or "decoders" in present:
            log.info("%s holds a semantic segmentation decoder: Mask R-CNN has no place for it, so FPN, RPN and "
                     "RoI heads start as initialised (only %s loads)", path, ", ".join(chosen))
    own = net.state_dict()
    predictors = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.")

    def wanted(key: str) -> bool:
        return key.split(".", 1)[0] in chosen and not key.startswith(predictors)

    expected = {k: v.shape for k, v in own.items() if wanted(k)}
    found = {k: v for k, v in state.items() if wanted(k)}
    problem = describe_mismatch(expected, found)
    if problem:
        raise BadFileError(f"{path} ({origin}) does not fit this model's {', '.join(chosen)}: {problem}. Build the "
                         f"backbone as the run that wrote it (model.net.backbone), or load fewer parts.")
    net.load_state_dict(found, strict=False)
    log.info("loaded %s (%d tensors) from %s; the rest as initialised", ", ".join(chosen), len(found), path)
    return chosen
