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
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

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
ReadRows = Callable[[int, int], torch.Tensor]


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

    # ---- whole scenes, a band of rows at a time (samrs.predict) --------------------------------

    def passes(self) -> list[_Pass]:
        """One pass per scale: windows of round(window / scale) image pixels every round(step / scale),
        each resized to the model's window (scale 1: the windows of `__call__` exactly)."""
        out = []
        for scale in self.scales:
            size = max(1, round(self.window / scale))
            out.append(_Pass(scale, size, min(size, max(1, round(self.step / scale)))))
        return out

    def count_windows(self, height: int, width: int) -> int:
        """Windows (forward passes of batch 1, flips aside) over a height x width image, all scales."""
        return sum(len(p.tops(height)) * len(p.lefts(width)) for p in self.passes())

    @torch.no_grad()
    def rows(self, forward: Forward, read_rows: ReadRows, height: int, width: int,
             on_windows: Callable[[int], None] | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Sliding-window inference over a height x width image that is never whole in memory.

        `read_rows(top, bottom)` gives the image's rows [top, bottom) as a (C_in, rows, width) tensor;
        yields (top, out) for consecutive bands of finished rows from the top, out (C, rows, width)
        on `device` (default cpu): the logits (or probabilities) `__call__` gives for those rows at
        scale 1, flips and averages included. Each scale is a pass of its own windows (`passes`), run
        row of windows by row of windows, so memory holds one band of `window` rows per scale.
        `on_windows(n)` is told of every n windows run (a progress bar)."""
        device = torch.device(self.device or "cpu")
        states = [_PassState(p, p.tops(height), p.lefts(width)) for p in self.passes()]
        emitted = 0
        while emitted < height:
            state = min((s for s in states if s.next < len(s.tops)), key=lambda s: s.done, default=None)
            if state is None:
                for s in states:
                    s.finish(height)
            else:
                self._run_row(forward, read_rows, state, height, width, device)
                if state.next == len(state.tops):
                    state.finish(height)
                if on_windows is not None:
                    on_windows(len(state.lefts))
            frontier = min(s.done for s in states)
            if frontier > emitted and len(states) == 1:  # handed out as finished, in chunks of rows
                for piece in states[0].take(emitted, frontier):
                    yield emitted, piece
                    emitted += piece.shape[1]
            elif frontier > emitted:
                parts = [torch.cat(s.take(emitted, frontier), dim=1) for s in states]
                yield emitted, torch.stack(parts).mean(0)
                emitted = frontier

    def _run_row(self, forward: Forward, read_rows: ReadRows, state: _PassState, height: int, width: int,
                 device: torch.device) -> None:
        """The next row of windows of one pass, added into its band."""
        p, top = state.pass_, state.tops[state.next]
        bottom = min(top + p.size, height)
        state.finish(top)  # no later window reaches above `top`
        pixels = read_rows(top, bottom)
        for start in range(0, len(state.lefts), self.batch_size):
            lefts = state.lefts[start:start + self.batch_size]
            crops = torch.stack([_padded(pixels[:, :, left:left + p.size], p.size) for left in lefts])
            if p.size != self.window:
                crops = F.interpolate(crops, size=(self.window, self.window), mode="bilinear", align_corners=False)
            out = self._window_outputs(forward, crops)
            if p.size != self.window:
                out = F.interpolate(out, size=(p.size, p.size), mode="bilinear", align_corners=False)
            out = out.to(device)
            for i, left in enumerate(lefts):
                right = min(left + p.size, width)
                state.add(out[i, :, : bottom - top, : right - left], top, left, width, device)
        state.next += 1


_CHUNK = 64  # rows of finished averages handed out at a time


def _padded(crop: torch.Tensor, size: int) -> torch.Tensor:
    """A (C, h, w) crop padded at the bottom/right to size x size with 0 (the mean after normalisation)."""
    pad_h, pad_w = size - crop.shape[1], size - crop.shape[2]
    return F.pad(crop, (0, pad_w, 0, pad_h)) if pad_h or pad_w else crop


@dataclass(frozen=True)
class _Pass:
    """The windows of one scale: `size` image pixels every `step`."""

    scale: float
    size: int
    step: int

    def tops(self, height: int) -> list[int]:
        return [w.top for w in tile_windows(height, 1, self.size, self.step)]

    def lefts(self, width: int) -> list[int]:
        return [w.left for w in tile_windows(1, width, self.size, self.step)]


@dataclass
class _PassState:
    """One pass under way: the sums and window counts of its open band of rows [done, done + size),
    kept in a ring of `size` rows allocated once (image row r at r % size), and its finished rows
    not yet handed out (from `given`)."""

    pass_: _Pass
    tops: list[int]
    lefts: list[int]
    next: int = 0  # the next row of windows to run
    done: int = 0  # rows above are finished
    given: int = 0
    sums: torch.Tensor | None = None  # (C, size, W)
    counts: torch.Tensor | None = None  # (size, W)
    finished: list[torch.Tensor] = field(default_factory=list)  # rows [given, done), averaged

    def _segments(self, start: int, stop: int) -> list[tuple[slice, slice]]:
        """(rows of the ring, rows from `start`) holding image rows [start, stop), at most `size` of them."""
        size = self.pass_.size
        first = min(stop - start, size - start % size)
        out = [(slice(start % size, start % size + first), slice(0, first))]
        if stop - start > first:
            out.append((slice(0, stop - start - first), slice(first, stop - start)))
        return out

    def add(self, out: torch.Tensor, top: int, left: int, width: int, device: torch.device) -> None:
        """A window's (C, rows, cols) output at (top, left); top >= done."""
        if self.sums is None:
            self.sums = torch.zeros(out.shape[0], self.pass_.size, width, device=device)
            self.counts = torch.zeros(self.pass_.size, width, device=device)
        right = left + out.shape[2]
        for ring, rows in self._segments(top, top + out.shape[1]):
            self.sums[:, ring, left:right] += out[:, rows]
            self.counts[ring, left:right] += 1

    def finish(self, row: int) -> None:
        """Rows above `row` get no more windows: average them and set them aside in chunks of at
        most _CHUNK rows (the band's averages never exist twice at once), clear their ring rows."""
        if row <= self.done:
            return
        if self.sums is not None:
            for ring, _ in self._segments(self.done, row):
                for start in range(ring.start, ring.stop, _CHUNK):
                    rows = slice(start, min(start + _CHUNK, ring.stop))
                    self.finished.append(self.sums[:, rows] / self.counts[rows].clamp(min=1))
                    self.sums[:, rows] = 0
                    self.counts[rows] = 0
        self.done = row

    def take(self, start: int, stop: int) -> list[torch.Tensor]:
        """The finished rows [start, stop) in their chunks, handed out once."""
        assert start == self.given and stop <= self.done
        out, count = [], 0
        while count < stop - start:
            piece = self.finished.pop(0)
            need = stop - start - count
            if piece.shape[1] > need:  # the rest waits for the next call
                self.finished.insert(0, piece[:, need:].clone())
                piece = piece[:, :need]
            out.append(piece)
            count += piece.shape[1]
        self.given = stop
        return out


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
