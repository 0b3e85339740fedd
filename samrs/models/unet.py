"""The paper's modified UNet decoder, built from segmentation-models-pytorch's UNet decoder.

As in the official SAMRS code: four smp decoder blocks (channels 512, 256, 128, 64) go from the
stride-32 level up to stride 2, taking the stride-16, 8 and 4 levels as skips; the fifth block of a
standard UNet is replaced by one 2x bilinear upsampling, so the output is at full resolution.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder
from torch import nn


class UNetDecoder(nn.Module):
    """Features (strides 4..32) -> (N, decoder_channels[-1], H, W)."""

    # the official classifier after it: a 3x3 conv, no dropout (see ClassifierHead)
    head_dropout, head_kernel_size = 0.0, 3

    def __init__(self, in_channels: Sequence[int], decoder_channels: Sequence[int] = (512, 256, 128, 64),
                 interpolation_mode: str = "nearest") -> None:
        super().__init__()
        self.in_channels, self.channels = list(in_channels), int(decoder_channels[-1])
        # smp expects the full-resolution input as level 0 (it only reads its size); a 0-channel
        # stand-in at stride 2 makes the last block end at stride 2 without a skip.
        self.unet = UnetDecoder([0, *self.in_channels], list(decoder_channels), n_blocks=len(decoder_channels),
                                interpolation_mode=interpolation_mode)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        n, _, h, w = feats[0].shape
        stem = feats[0].new_empty(n, 0, 2 * h, 2 * w)
        x = self.unet([stem, *feats])
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
