"""Batched SAM inference for every model family: images and their objects' prompts in, one mask crop
per object out.

The engine is shared; a family module (sam1.py, hq.py, sam2.py, sam3.py) supplies the model's image
encoder, prompt encoding and decoder, and the low-res logits of a window of cells (family.py).
Per call: the image encoder runs once per image with objects, several per forward pass, under autocast
on GPU. Per image, the objects are sorted by the size of their region and decoded in chunks of
`chunk_size` prompts (memory is bounded by one chunk, whatever the object count); each mask is then
computed only inside a window around its object (see decoder.py), equal there to what the family's
own post-processing gives at full size, in batches of windows of at most `max_window_pixels` pixels
once padded to the batch's largest.

Regions of one object, in image pixels:
- extent: the bounding box of its hbox and its region polygon (rotated box or clipped polygon);
- kept region: the extent grown by `margin_frac` of its width/height plus `margin_px` on each side,
  clipped to the image (or the whole image with `whole_image`); the returned mask is SAM's mask
  inside it;
- probe band: `outside_band_px` more pixels around the kept region. SAM's positive pixels there are
  counted in `InstanceMask.outside` and dropped: a mask that SAM continues beyond the kept region
  crosses the band, so outside > 0 says the margin cut it (and by how much, roughly). Parts of a
  mask that are disconnected from the object and lie beyond the band are not computed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch

from samrs.errors import ConfigError
from samrs.labeling.base import InstanceMask
from samrs.labeling.sam.decoder import apply_taps
from samrs.labeling.sam.family import PRECISIONS, SamFamily, as_family
from samrs.labeling.sam.frames import SamFrame
from samrs.labeling.sam.prompts import PromptSpec, build_prompts
from samrs.sources.records import ObjectRecord


def object_extents(objects: Sequence[ObjectRecord]) -> np.ndarray:
    """(N, 4) x_min, y_min, x_max, y_max over each object's hbox and region polygon."""
    out = np.empty((len(objects), 4), dtype=np.float64)
    for i, obj in enumerate(objects):
        region = np.asarray(obj.region(), dtype=np.float64)
        hbox = np.asarray(obj.hbox, dtype=np.float64)
        out[i, :2] = np.minimum(region.min(axis=0), hbox[:2])
        out[i, 2:] = np.maximum(region.max(axis=0), hbox[2:])
    return out


def grow_regions(boxes: np.ndarray, frac: float, px: float, height: int, width: int) -> np.ndarray:
    """(N, 4) integer pixel ranges x0, y0, x1, y1 (exclusive) of `boxes` grown and clipped, never empty."""
    size = boxes[:, 2:] - boxes[:, :2]
    grown = np.concatenate([boxes[:, :2] - frac * size - px, boxes[:, 2:] + frac * size + px], axis=1)
    lo = np.floor(grown[:, :2]).clip(0, [width - 1, height - 1])
    hi = np.maximum(np.ceil(grown[:, 2:]).clip(0, [width, height]), lo + 1)
    return np.concatenate([lo, hi], axis=1).astype(np.int64)


class Stopwatch:
    """Seconds spent per stage, summed over calls (synchronising the GPU when asked)."""

    def __init__(self, synchronize: bool = False) -> None:
        self.synchronize = synchronize
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.synchronize:
            torch.cuda.synchronize()
        start = time.perf_counter()
        yield
        if self.synchronize:
            torch.cuda.synchronize()
        self.seconds[stage] += time.perf_counter() - start


class SamEngine:
    """Labels objects with a SAM family: see the module docstring for regions, chunks and exactness.

    `sam`: a family (family.SamFamily), or segment-anything's Sam (wrapped as SAM 1).
    """

    def __init__(
        self,
        sam: SamFamily | torch.nn.Module,
        prompt: PromptSpec,
        chunk_size: int = 64,
        margin_frac: float = 0.25,
        margin_px: float = 16.0,
        outside_band_px: int = 8,
        whole_image: bool = False,
        multimask: bool = False,
        precision: str = "bf16",
        encoder_batch_size: int = 4,
        max_window_pixels: int = 1 << 20,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r}: choose one of {list(PRECISIONS)}")
        if min(chunk_size, encoder_batch_size, max_window_pixels) < 1:
            raise ConfigError("chunk_size, encoder_batch_size and max_window_pixels must be >= 1")
        if margin_frac < 0 or margin_px < 0 or outside_band_px < 0:
            raise ConfigError("margin_frac, margin_px and outside_band_px must be >= 0")
        self.family = as_family(sam)
        self.family.check_prompt(prompt)
        self.prompt = prompt
        self.chunk_size = chunk_size
        self.margin_frac = margin_frac
        self.margin_px = margin_px
        self.outside_band_px = outside_band_px
        self.whole_image = whole_image
        self.multimask = multimask
        self.precision = precision
        self.encoder_batch_size = encoder_batch_size
        self.max_window_pixels = max_window_pixels
        self.stopwatch = Stopwatch()

    @property
    def device(self) -> torch.device:
        return self.family.device

    def frame(self, height: int, width: int) -> SamFrame:
        f = self.family
        return SamFrame.for_image(height, width, f.img_size, f.low_res, f.square)

    def autocast(self) -> torch.autocast:
        """bf16/fp16 autocast on GPU; CPU always runs fp32 (CPU half precision is slower, not faster)."""
        enabled = self.device.type == "cuda" and self.precision != "fp32"
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision], enabled=enabled)

    @torch.inference_mode()
    def encode(self, images: Sequence[np.ndarray]):
        """The family's image features of (H, W, 3) uint8 RGB images, `encoder_batch_size` per pass,
        as its own predictor computes them (segment-anything: a (B, C, h, w) tensor)."""
        out = []
        for start in range(0, len(images), self.encoder_batch_size):
            with self.stopwatch("encoder"):
                out.append(self.family.encode(images[start : start + self.encoder_batch_size], self.autocast))
        return self.family.concat(out)

    def regions(self, objects: Sequence[ObjectRecord], frame: SamFrame) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) kept regions and (N, 4) computed regions (kept + probe band), x0, y0, x1, y1."""
        h, w = frame.height, frame.width
        if self.whole_image:
            kept = np.tile(np.array([0, 0, w, h], dtype=np.int64), (len(objects), 1))
            return kept, kept.copy()
        kept = grow_regions(object_extents(objects), self.margin_frac, self.margin_px, h, w)
        band = self.outside_band_px
        computed = np.concatenate([np.maximum(kept[:, :2] - band, 0), np.minimum(kept[:, 2:] + band, [w, h])], axis=1)
        return kept, computed

    @torch.inference_mode()
    def predict(
        self,
        embedding,
        frame: SamFrame,
        objects: Sequence[ObjectRecord],
    ) -> list[InstanceMask]:
        """One InstanceMask per object of one image (`embedding`: `encode`'s output for it), in order."""
        if not objects:
            return []
        family = self.family
        with self.stopwatch("prompts"):
            prompts = build_prompts(self.prompt, objects, frame)
            kept, computed = self.regions(objects, frame)
            windows = _Windows(frame, computed, family.embedding_side, self.device, family.halo)
            order = np.argsort(windows.pixels, kind="stable")  # similar sizes share a chunk
            context = family.image_context(embedding)
        concept = None
        if self.prompt.text:
            with self.stopwatch("concept"), self.autocast():
                concept = family.concept_scores(context, objects, frame)
        results: list[InstanceMask | None] = [None] * len(objects)
        for start in range(0, len(objects), self.chunk_size):
            chunk = order[start : start + self.chunk_size]
            with self.stopwatch("decoder"):
                decoded = family.decode(context, *prompts.encoder_inputs(chunk, self.device), self.multimask, self.autocast)
                scores = decoded.scores.float().cpu().numpy()
            for part in windows.batches(chunk, self.max_window_pixels):
                with self.stopwatch("masks"), self.autocast():
                    batch = torch.as_tensor(part, device=self.device)
                    objects_part = chunk[part]
                    cells, shape, row_taps, col_taps = windows.args(objects_part)
                    low_res = family.window_low_res(context, decoded, batch, cells, shape)
                    predicted = apply_taps(low_res, row_taps, col_taps) > family.mask_threshold
                with self.stopwatch("results"):
                    crops = _crops(predicted, kept[objects_part], computed[objects_part])
                    for (mask, x0, y0, outside), j, i in zip(crops, part, objects_part):
                        results[i] = InstanceMask(
                            mask=mask,
                            x0=x0,
                            y0=y0,
                            object_index=int(i),
                            class_id=objects[i].class_id,
                            score=float(scores[j]),
                            prompt=self.prompt.name,
                            outside=outside,
                            concept_score=None if concept is None else float(concept[i]),
                        )
        return results  # type: ignore[return-value]

    def label(
        self, images: Sequence[np.ndarray], objects: Sequence[Sequence[ObjectRecord]]
    ) -> list[list[InstanceMask]]:
        """For each image and its objects, one InstanceMask per object."""
        todo = [i for i, image_objects in enumerate(objects) if image_objects]  # the encoder skips empty tiles
        embeddings = self.encode([images[i] for i in todo]) if todo else None
        out: list[list[InstanceMask]] = [[] for _ in images]
        for row, i in enumerate(todo):
            out[i] = self.predict(embeddings[row : row + 1], self.frame(*images[i].shape[:2]), objects[i])
        return out


class _Windows:
    """Per-object windows of embedding cells and their postprocess taps, for one image.

    `halo` more cells on each side (clipped to the frame) for families whose upscaling has
    convolutions wider than one cell (SAM-HQ's 3x3 convolutions reach 2 low-res pixels, under a cell).
    """

    def __init__(
        self, frame: SamFrame, computed: np.ndarray, embedding_side: int, device: torch.device, halo: int = 0
    ) -> None:
        self.device = device
        self.side = embedding_side
        self.cell = frame.low_res // embedding_side  # low-res pixels per embedding cell (4)
        row_start, row_w, col_start, col_w = frame.taps()
        self.computed = computed
        self.cells_lo = np.stack([row_start[computed[:, 1]], col_start[computed[:, 0]]], axis=1) // self.cell
        last = np.stack([row_start[computed[:, 3] - 1], col_start[computed[:, 2] - 1]], axis=1) + 2
        self.cells_hi = np.minimum(last, frame.low_res - 1) // self.cell
        self.cells_lo = np.maximum(self.cells_lo - halo, 0)
        self.cells_hi = np.minimum(self.cells_hi + halo, embedding_side - 1)
        self.pixels = np.prod(computed[:, 2:] - computed[:, :2], axis=1)
        self.taps = [torch.as_tensor(t, device=device) for t in (row_start, row_w, col_start, col_w)]

    def batches(self, chunk: np.ndarray, max_pixels: int) -> Iterator[np.ndarray]:
        """Positions in `chunk` (sorted by size) split so a batch padded to its largest window has at
        most max_pixels image pixels (or is one object)."""
        start, high, wide = 0, 0, 0
        for pos, (x0, y0, x1, y1) in enumerate(self.computed[chunk]):
            high, wide = max(high, y1 - y0), max(wide, x1 - x0)
            if pos > start and (pos + 1 - start) * high * wide > max_pixels:
                yield np.arange(start, pos)
                start, high, wide = pos, y1 - y0, x1 - x0
        yield np.arange(start, len(chunk))

    def args(self, index: np.ndarray):
        """For the objects `index`, windows padded to the largest: first cells (b, 2) (row, col), the
        window's (rows, cols) of cells, and the row and column taps (decoder.apply_taps)."""
        shape = (self.cells_hi[index] - self.cells_lo[index] + 1).max(axis=0)
        first = np.minimum(self.cells_lo[index], self.side - shape)
        region = self.computed[index]
        out_shape = (region[:, 2:] - region[:, :2]).max(axis=0)  # (width, height)
        row_start, row_w, col_start, col_w = self.taps
        taps = []
        for axis, start, weights, offset in ((1, row_start, row_w, first[:, 0]), (0, col_start, col_w, first[:, 1])):
            pixels = torch.as_tensor(region[:, axis, None] + np.arange(out_shape[axis]), device=self.device)
            pixels = pixels.clamp_(max=len(start) - 1)
            local = start[pixels] - torch.as_tensor(offset * self.cell, device=self.device)[:, None]
            taps.append((local, weights[pixels]))
        cells = torch.as_tensor(first, device=self.device)
        return cells, (int(shape[0]), int(shape[1])), taps[0], taps[1]


def _crops(predicted: torch.Tensor, kept: np.ndarray, computed: np.ndarray) -> list[tuple[np.ndarray, int, int, int]]:
    """Per object: the mask cropped to its bounding box inside the kept region, x0, y0, outside count.

    predicted (b, oh, ow) bool on the computed regions (padded to the largest); an empty mask is
    (0, 0) at the kept region's corner.
    """
    out = []
    for mask, (kx0, ky0, kx1, ky1), (cx0, cy0, cx1, cy1) in zip(predicted.cpu().numpy(), kept, computed):
        region = mask[: cy1 - cy0, : cx1 - cx0]
        inside = region[ky0 - cy0 : ky1 - cy0, kx0 - cx0 : kx1 - cx0]
        outside = int(np.count_nonzero(region)) - int(np.count_nonzero(inside))
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if len(rows) == 0:
            out.append((np.zeros((0, 0), dtype=bool), int(kx0), int(ky0), outside))
            continue
        crop = inside[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].copy()
        out.append((crop, int(kx0 + cols[0]), int(ky0 + rows[0]), outside))
    return out
