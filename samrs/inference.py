"""Sliding-window inference over whole images, with optional flip and multi-scale test-time augmentation.

The image is cut into `window` x `window` windows every `stride` pixels (the last row and column
shifted back to end at the border, as mmseg's slide inference and samrs' tiling do); the windows'
logits are summed into a full-size map and divided by how many windows cover each pixel. Images
smaller than the window are padded (bottom/right, with 0 = the mean colour after normalisation) and
the padding is cut off again. With `flip`, every window is also run mirrored left-right and the two
outputs averaged; with `scales`, the whole procedure runs on the image resized by each factor and
the results, resized back, are averaged. `average="probs"` averages softmax probabilities instead
of logits everywhere (the official SAMRS test script; mmseg averages logits over windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from samrs.data.blocks import Window
from samrs.data.tiles import tile_windows
from samrs.errors import ConfigError

AVERAGES = ("logits", "probs")
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SlidingWindow:
    """`window`, `stride` (default ceil(2/3 window), as the official SAMRS test: 512 -> 342), `flip`,
    `scales`, `average`; `batch_size` windows go through the model at once; `device` keeps the
    full-size sums (default: the image's device; "cpu" for images whose class maps do not fit on
    the GPU)."""

    window: int
    stride: int | None = None
    flip: bool = False
    scales: Sequence[float] = (1.0,)
    average: str = "logits"
    batch_size: int = 8
    device: str | None = None

    def __post_init__(self) -> None:
        if self.window < 1 or not 0 < self.step <= self.window:
            raise ConfigError(f"sliding window {self.window} with stride {self.stride}: need 0 < stride <= window")
        if self.average not in AVERAGES:
            raise ConfigError(f"average={self.average!r}; choose one of {', '.join(AVERAGES)}")
        if not self.scales or min(self.scales) <= 0:
            raise ConfigError(f"scales={list(self.scales)}: give one or more positive factors")

    @property
    def step(self) -> int:
        return self.stride if self.stride is not None else math.ceil(self.window * 2 / 3)

    def windows(self, height: int, width: int) -> list[Window]:
        """The windows over a height x width image at least `window` on each side."""
        return tile_windows(height, width, self.window, self.step)

    def coverage(self, height: int, width: int) -> torch.Tensor:
        """(H, W) how many windows cover each pixel of an image of at least the window's size."""
        counts = torch.zeros(height, width)
        for top, bottom, left, right in self.windows(height, width):
            counts[top:bottom, left:right] += 1
        return counts

    @torch.no_grad()
    def __call__(self, forward: Forward, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) logits (or probabilities) of `forward` over images (N, 3, H, W)."""
        height, width = images.shape[2:]
        total = None
        for scale in self.scales:
            scaled = images if scale == 1 else F.interpolate(
                images, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="bilinear",
                align_corners=False)
            out = self._slide(forward, scaled)
            if scale != 1:
                out = F.interpolate(out, size=(height, width), mode="bilinear", align_corners=False)
            total = out if total is None else total.add_(out)
        return total.div_(len(self.scales))

    def _slide(self, forward: Forward, images: torch.Tensor) -> torch.Tensor:
        n, _, height, width = images.shape
        pad_w, pad_h = max(0, self.window - width), max(0, self.window - height)
        padded = F.pad(images, (0, pad_w, 0, pad_h)) if pad_w or pad_h else images  # F.pad always copies
        full_h, full_w = padded.shape[2:]
        windows = self.windows(full_h, full_w)
        device = torch.device(self.device) if self.device else images.device
        sums = None
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start:start + self.batch_size]
            crops = torch.cat([padded[:, :, t:b, l:r] for t, b, l, r in chunk])
            out = self._window_outputs(forward, crops).to(device)
            if sums is None:
                sums = torch.zeros(n, out.shape[1], full_h, full_w, device=device)
            for i, (t, b, l, r) in enumerate(chunk):
                sums[:, :, t:b, l:r] += out[i * n:(i + 1) * n]
        sums /= self.coverage(full_h, full_w).to(device)
        return sums[:, :, :height, :width]

    def _window_outputs(self, forward: Forward, crops: torch.Tensor) -> torch.Tensor:
        out = self._as_average(forward(crops))
        if self.flip:
            out = (out + self._as_average(forward(crops.flip(3))).flip(3)) / 2
        return out

    def _as_average(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits.softmax(dim=1) if self.average == "probs" else logits
