"""Block files: one image and its label, cut into square blocks that decode independently.

A training crop needs only the part of the tile under its window (on average about a twentieth of
a 1024x1024 tile for 224 crops at scales 0.5-2), but a PNG decodes whole. A block file stores the
image and label as separately encoded blocks, so a reader decodes only the blocks a window touches.

Layout: magic, a little-endian u32 header length, a JSON header (size, block side, codecs, the
source files' sizes and mtimes), then per plane (image, label) a u64 offset table of
`blocks + 1` entries, then the payloads in raster order. A payload of exactly `channels` bytes is
a constant block (its value per channel): blank label blocks and black padding cost one byte each.

Codecs: `png` (lossless, about the size of the source PNGs), `raw` (lossless, uncompressed, the
fastest to read, about 1.7x the disk of PNG), `jpeg` (lossy, `quality`, a third of PNG's size).
Labels are always PNG (or constant): they must stay exact.

Images may have any number of bands, 8 or 16 bits (multispectral GeoTIFF subsets): the header
records `channels` and `dtype` (absent: 3 and uint8, the files written before). PNG stores 1, 3 or
4 bands as they are and other counts as the bands stacked vertically in one grey image, 16-bit
included; JPEG takes 8-bit RGB only.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from samrs.errors import ConfigError
from samrs.utils.io import atomic_path

MAGIC = b"SAMRSBK1"
CODECS = ("png", "raw", "jpeg")
_HEAD = struct.Struct("<8sI")
_FIRST_READ = 4096  # one read usually holds the header and both offset tables


class Window(NamedTuple):
    """A half-open pixel rectangle: rows [top, bottom), columns [left, right)."""

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def full(cls, height: int, width: int) -> Window:
        return cls(0, height, 0, width)


@dataclass(frozen=True)
class BlockCodec:
    """How image blocks are encoded: codec name, block side, PNG level, JPEG quality."""

    codec: str = "png"
    block: int = 64
    png_level: int = 1
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ConfigError(f"unknown block codec {self.codec!r}; choose one of {', '.join(CODECS)}")
        if self.block < 8:
            raise ConfigError(f"block side {self.block} is too small (use 64 to 256)")

    def check_image(self, channels: int, dtype: np.dtype) -> None:
        """Refuse images the codec cannot store exactly as configured."""
        if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.uint16)):
            raise ConfigError(f"the block cache stores 8- or 16-bit images, not {np.dtype(dtype)}")
        if self.codec == "jpeg" and (channels != 3 or np.dtype(dtype) != np.uint8):
            raise ConfigError(f"data.cache.codec=jpeg takes 8-bit RGB images, not {channels} bands of "
                             f"{np.dtype(dtype)}: use png or raw")

    def encode(self, block: np.ndarray, plane: str) -> bytes:
        pixels = block.reshape(block.shape[0] * block.shape[1], -1)
        if (pixels == pixels[0]).all():
            return pixels[0].tobytes()
        codec = "png" if plane == "label" else self.codec
        if codec == "raw":
            return np.ascontiguousarray(block).tobytes()
        if codec == "jpeg":
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(block, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        else:  # PNG stores the array as given; decoding gives the same channel order back
            ok, data = cv2.imencode(".png", _png_layout(block), [cv2.IMWRITE_PNG_COMPRESSION, self.png_level])
        if not ok:
            raise ValueError(f"OpenCV could not encode a {block.shape} block as {codec}")
        return data.tobytes()


def _png_layout(block: np.ndarray) -> np.ndarray:
    """A block as PNG can hold it: 1, 3 or 4 bands as they are, others stacked vertically."""
    if block.ndim == 2 or block.shape[2] in (1, 3, 4):
        return block
    return np.ascontiguousarray(block.transpose(2, 0, 1)).reshape(-1, block.shape[1])


def _shape(height: int, width: int, channels: int) -> tuple[int, ...]:
    return (height, width) if channels == 1 else (height, width, channels)


def _decode(payload: bytes, codec: str, height: int, width: int, channels: int,
            dtype: np.dtype = np.dtype(np.uint8)) -> np.ndarray:
    shape = _shape(height, width, channels)
    if len(payload) == channels * dtype.itemsize:
        return np.broadcast_to(np.frombuffer(payload, dtype), shape)
    if codec == "raw":
        return np.frombuffer(payload, dtype).reshape(shape)
    data = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
    stacked = channels not in (1, 3, 4)
    if data is None or data.shape[:2] != ((channels * height, width) if stacked else (height, width)):
        raise OSError(f"corrupt {codec} block (expected {height}x{width})")
    if stacked:
        return data.reshape(channels, height, width).transpose(1, 2, 0)
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB) if codec == "jpeg" else data


def _blocks(height: int, width: int, side: int) -> tuple[int, int]:
    return -(-height // side), -(-width // side)


def write_block_file(
    path: str | os.PathLike, image: np.ndarray, label: np.ndarray, codec: BlockCodec, source: dict
) -> None:
    """Encode `image` (H, W, C), 8 or 16 bits, and `label` (H, W) into a block file at `path`, atomically."""
    height, width = label.shape
    channels = image.shape[2] if image.ndim == 3 else 1
    codec.check_image(channels, image.dtype)
    side = codec.block
    rows, cols = _blocks(height, width, side)
    planes = {"image": image, "label": label}
    payloads: dict[str, list[bytes]] = {
        plane: [codec.encode(array[r * side:(r + 1) * side, c * side:(c + 1) * side], plane)
                for r in range(rows) for c in range(cols)]
        for plane, array in planes.items()
    }
    layout = {} if (channels, image.dtype) == (3, np.uint8) else {"channels": channels, "dtype": str(image.dtype)}
    header = json.dumps({
        "height": height, "width": width, "block": side,
        "codecs": {"image": codec.codec, "label": "png"}, "source": source, **layout,
    }).encode()
    start = _HEAD.size + len(header) + 2 * 8 * (rows * cols + 1)
    tables = []
    for plane in planes:
        sizes = np.fromiter((len(p) for p in payloads[plane]), np.uint64, rows * cols)
        table = np.concatenate([[0], np.cumsum(sizes)]).astype("<u8") + start
        start = int(table[-1])
        tables.append(table.tobytes())
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(_HEAD.pack(MAGIC, len(header)))
        f.write(header)
        f.writelines(tables)
        for plane in planes:
            f.writelines(payloads[plane])


class BlockFile:
    """An open block file: its size, source stamp and window reads."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            head = f.read(_FIRST_READ)
            if len(head) < _HEAD.size or _HEAD.unpack_from(head)[0] != MAGIC:
                raise OSError(f"{self.path}: not a samrs block file (delete the cache directory to rebuild it)")
            end = _HEAD.size + _HEAD.unpack_from(head)[1]
            if len(head) < end:
                head += f.read(end - len(head))
            meta = json.loads(head[_HEAD.size:end])
            self.height, self.width, self.block = meta["height"], meta["width"], meta["block"]
            self.codecs, self.source = meta["codecs"], meta["source"]
            self.channels, self.dtype = meta.get("channels", 3), np.dtype(meta.get("dtype", "uint8"))
            rows, self._cols = _blocks(self.height, self.width, self.block)
            n = rows * self._cols + 1
            f.seek(end)
            tables = np.frombuffer(f.read(2 * 8 * n), "<u8")
        if tables.size != 2 * n:
            raise OSError(f"{self.path}: truncated block file (delete it to rebuild)")
        self._offsets = {"image": tables[:n], "label": tables[n:]}

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(image, label) inside `window`, decoding only the blocks it overlaps."""
        image, label = self._read(window, ("image", "label"))
        return image, label

    def read_image(self, window: Window) -> np.ndarray:
        """The image inside `window` alone (label blocks are not decoded: MAE needs no labels)."""
        return self._read(window, ("image",))[0]

    def _read(self, window: Window, planes: tuple[str, ...]) -> list[np.ndarray]:
        top, bottom, left, right = window
        if not (0 <= top < bottom <= self.height and 0 <= left < right <= self.width):
            raise ValueError(f"{self.path}: window {tuple(window)} outside the {self.height}x{self.width} image")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return [self._plane(fd, "image", self.channels, window, self.dtype) if plane == "image"
                    else self._plane(fd, plane, 1, window) for plane in planes]
        finally:
            os.close(fd)

    def _plane(self, fd: int, plane: str, channels: int, window: Window,
               dtype: np.dtype = np.dtype(np.uint8)) -> np.ndarray:
        top, bottom, left, right = window
        side, offsets, codec = self.block, self._offsets[plane], self.codecs[plane]
        out = np.empty(_shape(bottom - top, right - left, channels), dtype)
        c0, c1 = left // side, (right - 1) // side
        for r in range(top // side, (bottom - 1) // side + 1):
            first, last = r * self._cols + c0, r * self._cols + c1
            # the blocks of one row are contiguous on disk: one read per block row
            row = os.pread(fd, int(offsets[last + 1] - offsets[first]), int(offsets[first]))
            y0, y1 = r * side, min((r + 1) * side, self.height)
            for c in range(c0, c1 + 1):
                a = int(offsets[r * self._cols + c] - offsets[first])
                b = int(offsets[r * self._cols + c + 1] - offsets[first])
                x0, x1 = c * side, min((c + 1) * side, self.width)
                block = _decode(row[a:b], codec, y1 - y0, x1 - x0, channels, dtype)
                ys, ye = max(top, y0), min(bottom, y1)
                xs, xe = max(left, x0), min(right, x1)
                out[ys - top:ye - top, xs - left:xe - left] = block[ys - y0:ye - y0, xs - x0:xe - x0]
        return out
