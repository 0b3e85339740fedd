"""timm backbones that return 4 feature levels (strides 4, 8, 16, 32), NCHW."""

from __future__ import annotations

from typing import Sequence

import timm
import torch
from torch import nn


class TimmBackbone(nn.Module):
    """Any timm model with features_only; `channels` and `strides` describe its 4 outputs."""

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        out_indices: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        probe = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
        n_levels = len(probe.feature_info)
        del probe
        # The last four levels: strides 4-32 for CNNs whose first level is the stride-2 stem.
        self.out_indices = tuple(out_indices) if out_indices is not None else tuple(range(n_levels - 4, n_levels))
        self.model = timm.create_model(name, pretrained=pretrained, features_only=True,
                                       out_indices=self.out_indices, **kwargs)
        self.channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self._nhwc = getattr(self.model, "output_fmt", "NCHW") == "NHWC"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        return [f.permute(0, 3, 1, 2).contiguous() for f in feats] if self._nhwc else list(feats)
