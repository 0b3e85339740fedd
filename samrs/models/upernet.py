"""UperNet decoder as mmseg builds it (PPM with pool scales 1, 2, 3, 6 on the last level, FPN on all
levels, conv-BN-ReLU blocks) and mmseg's auxiliary FCN head, both without their classifiers, which
the segmentor owns (one per subset). The width defaults to the official SAMRS code's: the second
level's channel count (Swin-T 192, ViT-B 768, ResNet-50 512); mmseg's configs use 512.

Not smp's UPerNetDecoder: that one defaults to 256 channels, puts a LayerNorm on every input level
and cannot drop it, so it is not the network the paper trained (see docs/models.md)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """Pool the last level at several scales, project, upsample back and fuse with a 3x3 conv."""

    def __init__(self, cin: int, channels: int, pool_scales: Sequence[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(cin, channels, 1)) for s in pool_scales
        )
        self.bottleneck = conv_bn_relu(cin + len(pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [_resize(stage(x), x.shape[2:]) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UperNetDecoder(nn.Module):
    """Features (strides 4..32) -> fused (N, channels, H/4, W/4) map. `channels=None`: the width of
    the second level, as the official SAMRS UperNet."""

    # the classifier that follows it in the official code (Dropout2d(0.1) + 1x1 conv), see ClassifierHead
    head_dropout, head_kernel_size = 0.1, 1

    def __init__(self, in_channels: Sequence[int], channels: int | None = None,
                 pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.channels = channels = int(channels) if channels else self.in_channels[1]
        self.ppm = PyramidPooling(self.in_channels[-1], channels, pool_scales)
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in self.in_channels[:-1])
        self.fpn = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in self.in_channels[:-1])
        self.fuse = conv_bn_relu(len(self.in_channels) * channels, channels, 3)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)] + [self.ppm(feats[-1])]
        for i in range(len(laterals) - 1, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[2:]
        return self.fuse(torch.cat([outs[0]] + [_resize(o, size) for o in outs[1:]], dim=1))


class FCNHead(nn.Module):
    """mmseg's auxiliary FCNHead: `num_convs` conv-BN-ReLU blocks on level `in_index` (level 3 of 4,
    stride 16), 256 channels; its classifier and loss weight (0.4) live in the segmentor and task."""

    head_dropout, head_kernel_size = 0.1, 1

    def __init__(self, in_channels: Sequence[int], in_index: int = 2, channels: int = 256, num_convs: int = 1,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.in_index, self.channels = in_index, channels
        widths = [list(in_channels)[in_index]] + [channels] * num_convs
        self.convs = nn.Sequential(*(conv_bn_relu(a, b, kernel_size) for a, b in zip(widths, widths[1:])))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.convs(feats[self.in_index])
