"""One backbone, a shared decoder, one classifier per subset (paper Sec. 4.1, official code)."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn


class ClassifierHead(nn.Sequential):
    """Dropout2d + 1x1 conv: the per-subset classifier of the official code."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, 1))


class MultiHeadSegmentor(nn.Module):
    """backbone -> decoder -> heads[subset]; logits are upsampled to the input size.

    `decoder` is a factory taking `in_channels` (a Hydra partial), so its input widths follow the
    backbone. `heads` maps subset name to class count.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder: Callable[..., nn.Module],
        heads: Mapping[str, int],
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("the segmentor needs at least one head (subset name -> class count)")
        self.backbone = backbone
        self.decoder = decoder(in_channels=backbone.channels)
        self.heads = nn.ModuleDict({k: ClassifierHead(self.decoder.channels, int(n), dropout) for k, n in heads.items()})

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: head[1].out_channels for k, head in self.heads.items()}

    def forward(self, x: torch.Tensor, subset: str) -> torch.Tensor:
        logits = self.heads[subset](self.decoder(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)
