"""Multi-level neck for plain (single-stride) backbones such as ViT: one feature map per level is
rescaled to strides 4, 8, 16, 32 (BEiT/MAE style: deconv x4, deconv x2, identity, max-pool)."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from samrs.errors import ConfigError


def _rescale(channels: int, scale: float) -> nn.Module:
    """x2 per transposed conv (BN + GELU between them), identity at 1, max-pool below 1."""
    if scale == 1:
        return nn.Identity()
    if scale < 1:
        return nn.MaxPool2d(kernel_size=round(1 / scale))
    steps = round(math.log2(scale))
    if 2**steps != scale:
        raise ConfigError(f"neck scale {scale} is not a power of two")
    layers: list[nn.Module] = []
    for i in range(steps):
        if i:
            layers += [nn.BatchNorm2d(channels), nn.GELU()]
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class MultiLevelNeck(nn.Module):
    """Features of equal stride -> features at `stride / scale` for each scale, channels kept."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], scales: Sequence[float] = (4, 2, 1, 0.5)) -> None:
        super().__init__()
        if not len(in_channels) == len(strides) == len(scales):
            raise ConfigError(f"the neck got {len(in_channels)} feature levels for {len(scales)} scales {list(scales)}")
        self.levels = nn.ModuleList(_rescale(c, s) for c, s in zip(in_channels, scales))
        self.channels = list(in_channels)
        self.strides = [int(stride / s) for stride, s in zip(strides, scales)]

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [level(f) for level, f in zip(self.levels, feats)]
