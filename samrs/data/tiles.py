"""Training tiles of large scenes as windows into the scenes' block files, and seeded fractions of them.

A fine-tuning scene (a 6000 x 6000 Potsdam tile, an iSAID/DOTA image) is decoded once into a block
file; its training tiles are windows of it (`size` x `size`, every `stride` pixels, the last row
and column shifted back to end at the border, as samrs.sources.tiling and mmseg's converters do),
so overlapping tiles store no pixel twice and a tile read decodes only the blocks under it. Scenes
smaller than a tile give one tile of the whole scene (the training crop pads it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from samrs.data.blocks import Window
from samrs.data.dataset import PixelSample, Reader
from samrs.errors import ConfigError
from samrs.sources.tiling import tile_name, window_starts


@dataclass(frozen=True)
class Tile:
    """One training tile: its name ({scene}__{size}__{x}___{y}), its scene and its window there."""

    name: str
    scene: str
    window: Window


def tile_windows(height: int, width: int, size: int, stride: int) -> list[Window]:
    """The tiles of a height x width scene, row by row (clipped to the scene when it is smaller)."""
    if not 0 < stride <= size:
        raise ConfigError(f"tile stride {stride} must be in 1..{size} (the tile size), or tiles would leave gaps")
    return [Window(y, min(y + size, height), x, min(x + size, width))
            for y in window_starts(height, size, stride, "shift")
            for x in window_starts(width, size, stride, "shift")]


def scene_tiles(sizes: Mapping[str, Sequence[int]], size: int, stride: int) -> list[Tile]:
    """Every tile of the scenes {name: (height, width)}, scene by scene in the given order."""
    return [Tile(tile_name(scene, size, w.left, w.top), scene, w)
            for scene, (height, width) in sizes.items() for w in tile_windows(int(height), int(width), size, stride)]


def check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"data.fraction={fraction} must be in (0, 1]")


def select_fraction(tiles: Sequence[Tile], fraction: float, seed: int) -> list[Tile]:
    """A fixed subset of ceil(fraction * N) tiles (at least one): the first of one seeded permutation,
    so the same seed gives the same tiles and a smaller fraction's tiles are part of a larger one's.
    The tiles keep their original order."""
    check_fraction(fraction)
    if fraction == 1.0:
        return list(tiles)
    count = max(1, math.ceil(fraction * len(tiles) - 1e-9))
    keep = np.sort(np.random.default_rng(seed).permutation(len(tiles))[:count])
    return [tiles[i] for i in keep]


class TileSample:
    """A window of a scene, read as if it were an image of its own."""

    def __init__(self, scene: PixelSample, window: Window) -> None:
        self.scene, self.window = scene, window
        self.height, self.width = window.bottom - window.top, window.right - window.left

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        top, left = self.window.top, self.window.left
        return self.scene.read(Window(window.top + top, window.bottom + top, window.left + left, window.right + left))


class TileReader:
    """Opens tiles by name from a reader of whole scenes."""

    def __init__(self, scenes: Reader, tiles: Iterable[Tile]) -> None:
        self.scenes = scenes
        self.tiles = {t.name: t for t in tiles}

    def open(self, name: str) -> TileSample:
        tile = self.tiles[name]
        return TileSample(self.scenes.open(tile.scene), tile.window)
