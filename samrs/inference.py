"""Sliding-window inference over whole images, with optional flip and multi-scale test-time augmentation.

The image is cut into `window` x `window` windows every `stride` pixels (the last row and column
shifted back to end at the border, as mmseg's slide inference and samrs' tiling do); the windows'
logits are summed into a full-size map and divided by how many windows cover each pixel. Images
smaller than the window are padded (bottom/right, with 0 = the mean colour after normalisation) and
the padding is cut off again. With `flip`, every window is also run mirrored left-right and the two
outputs averaged; with `scales`, the whole procedure runs on the image resized by each factor
(to floor(side * factor) pixels, as the official test script) and the results, resized back, are
averaged. `average="probs"` averages softmax probabilities instead of logits everywhere (the
official SAMRS test script; mmseg averages logits over windows).

Two evaluation protocols (`PROTOCOLS`) decide what the samples are and how they are scored:
`official`, the official test script (test_gpu.py): every tile of the test split as it was cut
(overlapping), scored on its own, with flip and softmax averaging; `sliding`: whole scenes, every
pixel once, logits averaged. `protocol_label` names the protocol of a set of scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from samrs.data.blocks import Window
from samrs.data.tiles import tile_windows
from samrs.errors import ConfigError

AVERAGES = ("logits", "probs")
Forward = Callable[[torch.Tensor], torch.Tensor]
# what each protocol sets: the validation samples (data.val_mode), the inference defaults and how
# classes absent from the whole split count in the means (samrs.metrics)
PROTOCOLS = {
    "official": {"val_mode": "tiles", "flip": True, "average": "probs", "absent_classes": "zero"},
    "sliding": {"val_mode": "whole", "flip": False, "average": "logits", "absent_classes": "skip"},
}


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
            # floor(side * scale) pixels sampled at the factor itself, as the official test script
            scaled = images if scale == 1 else F.interpolate(images, scale_factor=scale, mode="bilinear",
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
        if not self.flip:
            return self._as_average(forward(crops))
        # the windows and their mirror images in one pass, as the official test script
        out = self._as_average(forward(torch.cat([crops, crops.flip(3)])))
        plain, mirrored = out.chunk(2)
        return (plain + mirrored.flip(3)) / 2

    def _as_average(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return logits.softmax(dim=1) if self.average == "probs" else logits


def check_protocol(protocol: str, key: str = "evaluate.protocol") -> dict[str, Any]:
    """The settings of a protocol name, or an error naming the config key."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{key}={protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


def protocol_label(val_mode: str, inference: Mapping[str, Any] | None, absent_classes: str | None = None) -> str:
    """How scores were produced, for metrics.json and the result tables: `official` (tiles of the
    split, flip, softmax averaged, absent classes 0), `sliding` (whole scenes, logits averaged,
    absent classes skipped) or `crop` (centre crops), with any setting that departs from the
    protocol's in parentheses, e.g. "sliding (flip, scales 0.75/1/1.25)"."""
    if val_mode == "crop" or inference is None:
        return "crop" if val_mode == "crop" else f"{val_mode} (one pass)"
    name = next(k for k, v in PROTOCOLS.items() if v["val_mode"] == val_mode)
    expected = PROTOCOLS[name]
    notes = []
    if absent_classes is not None and absent_classes != expected["absent_classes"]:
        notes.append(f"absent classes: {absent_classes}")
    if bool(inference.get("flip")) != expected["flip"]:
        notes.append("flip" if inference.get("flip") else "no flip")
    if inference.get("average", "logits") != expected["average"]:
        notes.append(f"{inference.get('average')} averaged")
    scales = [float(x) for x in inference.get("scales") or [1.0]]
    if scales != [1.0]:
        notes.append("scales " + "/".join(f"{x:g}" for x in scales))
    stride, window = inference.get("stride"), inference.get("window")
    if stride is not None and not (window and stride == math.ceil(window * 2 / 3)):
        notes.append(f"stride {stride}")
    return f"{name} ({', '.join(notes)})" if notes else name
