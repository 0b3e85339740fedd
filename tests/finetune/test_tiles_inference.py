"""Training tiles and sliding-window inference: every pixel covered as often as expected, tiles and
window outputs stitched back to the input size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs.data.blocks import BlockCodec, Window, write_block_file
from samrs.data.readers import BlockReader
from samrs.data.tiles import TileReader, scene_tiles, select_fraction, tile_windows
from samrs.inference import SlidingWindow

# (height, width, size, stride) -> tile starts along y and x, worked out by hand: every `stride`
# pixels, the last start moved back to end at the border; one start when the side fits a tile.
CASES = {
    (200, 300, 96, 64): ([0, 64, 104], [0, 64, 128, 192, 204]),
    (96, 96, 96, 64): ([0], [0]),
    (50, 130, 64, 64): ([0], [0, 64, 66]),
    (1100, 700, 512, 320): ([0, 320, 588], [0, 188]),
}


def expected_counts(height: int, width: int, size: int, ys: list[int], xs: list[int]) -> np.ndarray:
    rows = np.zeros(height, int)
    cols = np.zeros(width, int)
    for y in ys:
        rows[y:y + size] += 1
    for x in xs:
        cols[x:x + size] += 1
    return rows[:, None] * cols[None, :]


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_tiles_cover_every_pixel_as_often_as_expected(case):
    height, width, size, stride = case
    ys, xs = CASES[case]
    windows = tile_windows(height, width, size, stride)
    assert [(w.top, w.left) for w in windows] == [(y, x) for y in ys for x in xs]
    counts = np.zeros((height, width), int)
    for top, bottom, left, right in windows:
        assert bottom - top == min(size, height) and right - left == min(size, width)
        counts[top:bottom, left:right] += 1
    np.testing.assert_array_equal(counts, expected_counts(height, width, size, ys, xs))
    assert counts.min() >= 1


def test_tiles_read_back_and_stitch_to_the_scene(tmp_path):
    rng = np.random.default_rng(0)
    scenes = {"a": (200, 300), "b": (50, 130)}
    pixels = {}
    for name, (h, w) in scenes.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        label = rng.integers(0, 6, (h, w), dtype=np.uint8)
        write_block_file(tmp_path / f"{name}.blk", image, label, BlockCodec(block=32), {})
        pixels[name] = (image, label)
    tiles = scene_tiles(scenes, 96, 64)
    assert len(tiles) == 3 * 5 + 1 * 2  # b: x at 0 and 34
    assert tiles[0].name == "a__96__0___0" and tiles[-1].name == "b__96__34___0"
    reader = TileReader(BlockReader(tmp_path), tiles)
    for name, (image, label) in pixels.items():
        canvas = np.zeros_like(image)
        canvas_label = np.full_like(label, 255)
        for tile in (t for t in tiles if t.scene == name):
            sample = reader.open(tile.name)
            tile_image, tile_label = sample.read(Window.full(sample.height, sample.width))
            top, bottom, left, right = tile.window
            canvas[top:bottom, left:right] = tile_image
            canvas_label[top:bottom, left:right] = tile_label
            inner = sample.read(Window(5, 20, 7, 30))  # a window inside the tile, in tile coordinates
            np.testing.assert_array_equal(inner[0], image[top + 5:top + 20, left + 7:left + 30])
        np.testing.assert_array_equal(canvas, image)
        np.testing.assert_array_equal(canvas_label, label)


def test_potsdam_scene_gives_361_tiles():
    starts = [*range(0, 5441, 320), 5488]
    assert [(w.top, w.left) for w in tile_windows(6000, 6000, 512, 320)] == [(y, x) for y in starts for x in starts]


def test_fraction_is_fixed_by_its_seed_and_nested():
    tiles = scene_tiles({"a": (600, 600), "b": (400, 500)}, 96, 64)
    n = len(tiles)
    assert n == 9 * 9 + 6 * 8
    assert len(select_fraction(tiles, 0.001, seed=0)) == 1  # at least one tile
    assert len(select_fraction(tiles, 0.01, 0)) == 2 and len(select_fraction(tiles, 0.05, 0)) == 7  # ceil(f * 129)
    assert select_fraction(tiles, 0.05, 0) == select_fraction(tiles, 0.05, 0)
    assert select_fraction(tiles, 0.3, 0) != select_fraction(tiles, 0.3, 1)
    small, large = set(select_fraction(tiles, 0.1, 7)), set(select_fraction(tiles, 0.3, 7))
    assert small < large
    picked = select_fraction(tiles, 0.3, 7)
    assert picked == sorted(picked, key=tiles.index)  # scene and position order kept
    assert select_fraction(tiles, 1.0, 3) == tiles
    with pytest.raises(ValueError, match="must be in"):
        select_fraction(tiles, 0.0, 0)


@pytest.mark.parametrize("size", [(100, 130), (40, 70), (64, 64), (200, 97)], ids=str)
@pytest.mark.parametrize("flip", [False, True])
def test_sliding_window_of_a_pointwise_model_equals_one_pass(size, flip):
    """A 1x1 convolution gives each pixel the same output in every window (and mirrored), so the
    stitched average must equal one pass over the whole image, at the input size."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 1)
    images = torch.randn(2, 3, *size)
    out = SlidingWindow(64, 40, flip=flip, batch_size=3)(conv, images)
    assert out.shape == (2, 5, *size)
    torch.testing.assert_close(out, conv(images).detach(), atol=1e-5, rtol=1e-5)


def test_sliding_window_averages_each_pixel_over_its_windows():
    """A model answering each window with one value (its window's index) gives each pixel the mean
    over the windows covering it; windows and counts worked out by hand (100 px, 64 / 36)."""
    starts = [0, 36]
    windows = [(y, x) for y in starts for x in starts]
    seen = []

    def window_index(crops: torch.Tensor) -> torch.Tensor:
        values = torch.arange(len(seen), len(seen) + len(crops), dtype=torch.float32)
        seen.extend(values.tolist())
        return values.view(-1, 1, 1, 1).expand(-1, 1, *crops.shape[2:])

    sliding = SlidingWindow(64, 36, batch_size=2)
    out = sliding(window_index, torch.zeros(1, 3, 100, 100))[0, 0].numpy()
    total, count = np.zeros((100, 100)), np.zeros((100, 100))
    for value, (y, x) in enumerate(windows):
        total[y:y + 64, x:x + 64] += value
        count[y:y + 64, x:x + 64] += 1
    np.testing.assert_allclose(out, total / count, rtol=1e-6)
    np.testing.assert_array_equal(sliding.coverage(100, 100).numpy(), count)
    assert sliding.step == 36 and SlidingWindow(512).step == 342  # ceil(2/3 * 512)


def test_multi_scale_and_probability_averaging():
    images = torch.zeros(1, 3, 90, 70)
    constant = torch.tensor([1.0, 3.0, 0.0])

    def model(crops: torch.Tensor) -> torch.Tensor:
        return constant.view(1, 3, 1, 1).expand(len(crops), 3, *crops.shape[2:])

    logits = SlidingWindow(48, scales=(0.5, 1.0, 1.5))(model, images)
    assert logits.shape == (1, 3, 90, 70)
    torch.testing.assert_close(logits, constant.view(1, 3, 1, 1).expand_as(logits))
    probs = SlidingWindow(48, average="probs", flip=True)(model, images)
    torch.testing.assert_close(probs, constant.softmax(0).view(1, 3, 1, 1).expand_as(probs))


def test_bad_window_settings_are_refused():
    with pytest.raises(ValueError, match="stride"):
        SlidingWindow(64, stride=80)
    with pytest.raises(ValueError, match="average"):
        SlidingWindow(64, average="votes")
    with pytest.raises(ValueError, match="scales"):
        SlidingWindow(64, scales=())

