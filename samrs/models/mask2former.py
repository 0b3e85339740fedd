"""Mask2Former for multi-head semantic segmentation, split as the official SAMRS End_to_End code
splits it: the backbone, the pixel decoder (multi-scale deformable attention) and the masked-
attention transformer decoder are shared; every subset has its own class predictor (its classes +
"no object") and its own Hungarian-matched class + mask + dice loss.

The pixel decoder, transformer decoder, matcher and loss are transformers' (`Mask2FormerPixelDecoder`,
`Mask2FormerTransformerModule`, `Mask2FormerLoss`); the backbone is samrs' `TimmBackbone`. The
layers, their order and arithmetic are those of mmdet's Mask2Former head that the official code
uses (checked numerically against it: docs/models.md), so an official checkpoint loads
(`samrs.models.official_mask2former`).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerAttention,
    Mask2FormerLoss,
    Mask2FormerPixelDecoder,
    Mask2FormerTransformerModule,
)

from samrs.errors import ConfigError
from samrs.classes import IGNORE_INDEX
from samrs.models.segmentor import features_per_subset
from samrs.models.weights import load_pretrained

# The official loss weights and point sampling (mmdet's Mask2Former head as the official code sets it).
OFFICIAL_CRITERION = {"class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0, "no_object_weight": 0.1,
                      "num_points": 12544, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75}


class Mask2FormerDecoder(nn.Module):
    """Backbone levels (strides 4..32) -> per transformer layer (the queries before the first
    layer included: `decoder_layers` + 1 outputs) the normalised query embeddings (N, Q, hidden)
    and the mask logits (N, Q, H/4, W/4).

    Official sizes (End_to_End `models.py`): hidden and mask width 256, 100 queries, 6 deformable
    encoder layers (8 heads, 3 levels, 4 points, FFN 1024) on strides 8-32, a stride-4 FPN level,
    9 masked-attention decoder layers (8 heads, FFN 2048), post-norm, no dropout. Initialised as the
    official `initialize_decoder` leaves it (`official_init`).
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int] = (4, 8, 16, 32), hidden_dim: int = 256,
                 num_queries: int = 100, encoder_layers: int = 6, decoder_layers: int = 9, num_heads: int = 8,
                 encoder_feedforward_dim: int = 1024, dim_feedforward: int = 2048) -> None:
        super().__init__()
        if len(in_channels) != 4 or hidden_dim % 32:
            raise ConfigError(f"Mask2FormerDecoder needs 4 feature levels and a hidden_dim that is a multiple of 32 "
                              f"(GroupNorm of 32 groups); got in_channels={list(in_channels)}, hidden_dim={hidden_dim}")
        # transformers counts the queries' first prediction as a layer: 9 layers are its decoder_layers=10.
        # (The config's default Swin backbone sub-config is never used: samrs' backbone is separate.)
        config = Mask2FormerConfig(feature_size=hidden_dim, mask_feature_size=hidden_dim, hidden_dim=hidden_dim,
                         num_queries=num_queries, encoder_layers=encoder_layers, decoder_layers=decoder_layers + 1,
                         num_attention_heads=num_heads, encoder_feedforward_dim=encoder_feedforward_dim,
                         dim_feedforward=dim_feedforward, dropout=0.0, pre_norm=False,
                         enforce_input_projection=False, feature_strides=list(strides))
        self.channels = hidden_dim
        self.pixel_decoder = Mask2FormerPixelDecoder(config, feature_channels=list(in_channels))
        self.transformer = Mask2FormerTransformerModule(in_features=hidden_dim, config=config)
        self.official_init()

    def forward(self, feats: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pixel = self.pixel_decoder(list(feats))
        out = self.transformer(pixel.multi_scale_features, pixel.mask_features)
        queries = [h.transpose(0, 1) for h in out.intermediate_hidden_states]  # (Q, N, C) -> (N, Q, C)
        return queries, list(out.masks_queries_logits)

    @torch.no_grad()
    def official_init(self) -> None:
        """The official `initialize_decoder`: convolutions Kaiming-uniform (fan in, ReLU), linear
        layers Xavier-uniform, biases 0; embeddings N(0, 1), norms 1 / 0. The official self-attention
        is one nn.MultiheadAttention whose (3C, C) input projection keeps PyTorch's Xavier start over
        the whole matrix; transformers splits it into q/k/v, so they are drawn together here."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if isinstance(m, Mask2FormerAttention):
                joint = nn.init.xavier_uniform_(torch.empty(3 * m.embed_dim, m.embed_dim))
                for proj, part in zip((m.q_proj, m.k_proj, m.v_proj), joint.chunk(3)):
                    proj.weight.copy_(part)
        # transformers leaves this one uninitialised (officially an nn.Embedding: N(0, 1))
        nn.init.normal_(self.pixel_decoder.level_embed)


class SetCriterion(Mask2FormerLoss):
    """transformers' Mask2Former loss for one subset (Hungarian matching on sampled points, class
    cross-entropy with a down-weighted "no object", sigmoid BCE and dice on uncertain points),
    with the official head's normaliser: matched masks, at least 1 per image, averaged over DDP
    ranks. Returns the weighted terms."""

    def __init__(self, num_classes: int, class_weight: float, mask_weight: float, dice_weight: float,
                 no_object_weight: float, num_points: int, oversample_ratio: float,
                 importance_sample_ratio: float) -> None:
        config = Mask2FormerConfig(num_labels=num_classes, class_weight=class_weight, mask_weight=mask_weight,
                         dice_weight=dice_weight, no_object_weight=no_object_weight, train_num_points=num_points,
                         oversample_ratio=oversample_ratio, importance_sample_ratio=importance_sample_ratio)
        super().__init__(config, {"loss_cross_entropy": class_weight, "loss_mask": mask_weight,
                                  "loss_dice": dice_weight})
        # a constant of the loss, not a weight: kept out of checkpoints and exports
        self.register_buffer("empty_weight", self.empty_weight, persistent=False)

    def get_num_masks(self, class_labels: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
        num = torch.tensor(float(sum(max(len(c), 1) for c in class_labels)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(num)
            num = num / dist.get_world_size()
        return num.clamp(min=1)

    def weighted(self, mask_logits: torch.Tensor, class_logits: torch.Tensor, masks: list[torch.Tensor],
                 classes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"loss_cls", "loss_mask", "loss_dice"} of one layer's predictions, weighted."""
        raw = self(mask_logits, class_logits, masks, classes)
        return {"loss_cls": raw["loss_cross_entropy"] * self.weight_dict["loss_cross_entropy"],
                "loss_mask": raw["loss_mask"] * self.weight_dict["loss_mask"],
                "loss_dice": raw["loss_dice"] * self.weight_dict["loss_dice"]}


def semantic_targets(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Label maps (N, H, W) -> per image the classes present (ignore_index left out) and one binary
    mask (float) per class, as Mask2Former's semantic training and the official head form them:
    ignored pixels are 0 in every mask."""
    classes, masks = [], []
    for label in labels:
        present = label.unique()
        present = present[present != ignore_index]
        classes.append(present.long())
        masks.append((label[None] == present[:, None, None]).float())
    return classes, masks


class Mask2FormerSegmentor(nn.Module):
    """backbone -> Mask2FormerDecoder (shared) -> per subset a class predictor nn.Linear(hidden,
    classes + 1) on every layer's queries.

    `forward(x, subset)` gives per-class semantic scores (N, C, H, W) at the input size: Mask2Former's
    semantic combination softmax(class)[..., :-1] x sigmoid(mask logits upsampled bilinearly to the
    input), summed over the queries, as the official validation computes them. Training goes through
    `forward_subsets` (query outputs, no upsampling) and `loss` (per subset, summed over the layers
    as the official head does); SegmentationTask calls both.

    `decoder`: a factory taking `in_channels` and `strides` (Hydra partial of Mask2FormerDecoder).
    `heads`: subset -> class count. `criterion`: loss weights and point sampling (default: the
    official values, OFFICIAL_CRITERION). `concat_subsets`: as MultiHeadSegmentor. `pretrained`,
    `pretrained_parts`: start backbone and decoder from a pre-training export (load_pretrained).
    """

    neck = None  # the layout of MultiHeadSegmentor that exports and starts expect: backbone, decoder, heads
    shared_decoder = True

    def __init__(self, backbone: nn.Module, decoder: Callable[..., Mask2FormerDecoder], heads: Mapping[str, int],
                 criterion: Mapping[str, float] | None = None, ignore_index: int = IGNORE_INDEX,
                 concat_subsets: bool | str = "auto", pretrained: str | None = None,
                 pretrained_parts: Sequence[str] | None = None) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("the segmentor needs at least one head (subset name -> class count)")
        if concat_subsets not in (True, False, "auto"):
            raise ConfigError(f"concat_subsets must be true, false or auto, got {concat_subsets!r}")
        unknown = set(criterion or {}) - set(OFFICIAL_CRITERION)
        if unknown:
            raise ConfigError(f"model.net.criterion: unknown keys {sorted(unknown)}; "
                              f"known: {', '.join(OFFICIAL_CRITERION)}")
        self.backbone = backbone
        self.decoder = decoder(in_channels=backbone.channels, strides=backbone.strides)
        self.heads = nn.ModuleDict({k: nn.Linear(self.decoder.channels, int(n) + 1) for k, n in heads.items()})
        for head in self.heads.values():  # the official initialize_head
            nn.init.xavier_uniform_(head.weight)
            nn.init.zeros_(head.bias)
        settings = {**OFFICIAL_CRITERION, **(criterion or {})}
        self.criteria = nn.ModuleDict({k: SetCriterion(int(n), **settings) for k, n in heads.items()})
        self.ignore_index, self.concat_subsets = ignore_index, concat_subsets
        if pretrained:
            load_pretrained(self, pretrained, parts=pretrained_parts)

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: head.out_features - 1 for k, head in self.heads.items()}

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone levels (strides 4..32) for images (N, 3, H, W)."""
        return self.backbone(x)

    def decode(self, feats: Sequence[torch.Tensor], subset: str) -> dict[str, list[torch.Tensor]]:
        """Per layer, class logits (N, Q, C + 1) of `subset` and mask logits (N, Q, H/4, W/4)."""
        queries, masks = self.decoder(feats)
        head = self.heads[subset]
        return {"class_logits": [head(q) for q in queries], "mask_logits": masks}

    def forward_subsets(self, images: Mapping[str, torch.Tensor]) -> dict[str, dict[str, list[torch.Tensor]]]:
        """{subset: images} -> {subset: decode(...)}: one training step's forward pass."""
        per_subset = features_per_subset(self, images)
        return {k: self.decode(per_subset[k], k) for k in images}

    @staticmethod
    def semantic(out: Mapping[str, list[torch.Tensor]], size: Sequence[int]) -> torch.Tensor:
        """Semantic scores (N, C, *size) from the last layer's class and mask logits."""
        probs = out["class_logits"][-1].float().softmax(-1)[..., :-1]
        masks = F.interpolate(out["mask_logits"][-1].float(), size=tuple(size), mode="bilinear",
                              align_corners=False).sigmoid()
        return torch.einsum("nqc,nqhw->nchw", probs, masks)

    def forward(self, x: torch.Tensor, subset: str) -> torch.Tensor:
        return self.semantic(self.decode(self.features(x), subset), x.shape[2:])

    def loss(self, subset: str, out: Mapping[str, list[torch.Tensor]], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted class, mask and dice losses of `subset` against label maps (N, H, W) (255
        ignored), each summed over the layers. Computed in fp32 (the matcher hands its costs to scipy)."""
        classes, masks = semantic_targets(labels, self.ignore_index)
        criterion = self.criteria[subset]
        total: dict[str, torch.Tensor] = {}
        with torch.autocast(labels.device.type, enabled=False):
            for class_logits, mask_logits in zip(out["class_logits"], out["mask_logits"]):
                for name, value in criterion.weighted(mask_logits.float(), class_logits.float(), masks, classes).items():
                    total[name] = total[name] + value if name in total else value
        return total
