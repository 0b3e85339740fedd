"""What the head-less segmentation backbones of the zoo share: timm's model interface around a
`forward_intermediates` that returns the official levels, and the usual ViT-family initialisation."""

from __future__ import annotations

from typing import Sequence

import torch
from timm.layers import trunc_normal_
from timm.models._features import feature_take_indices
from torch import nn


class LevelsBackbone(nn.Module):
    """Mixin: `num_levels` levels from `forward_intermediates`; no classifier (pooled features are
    the "head"), nothing to prune (the official outputs need the whole network)."""

    num_levels = 4

    @staticmethod
    def check_no_classifier(name: str, num_classes: int) -> None:
        if num_classes:
            raise ValueError(f"{name} is a segmentation backbone without a classifier: num_classes must be 0")

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Nothing is removed; returns the absolute indices."""
        return feature_take_indices(self.num_levels, indices)[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last level (NCHW)."""
        return self.forward_intermediates(x, indices=[self.num_levels - 1], intermediates_only=True)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class Norm2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (key `ln`: the official ViT-B and RVSA necks' fpn1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


def init_linear_and_norms(module: nn.Module) -> None:
    """Truncated normal (0.02) linear weights, zero biases, unit LayerNorms (module.apply)."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
