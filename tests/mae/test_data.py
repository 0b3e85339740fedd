"""MAE data: crops of the training images as windows into the block cache, MAE's augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samrs.data.blocks import BlockFile, Window
from samrs.data.mae import CropIndex, MAEDataModule, MAETransform, random_resized_window
from samrs.errors import ConfigError


def test_crops_cover_every_image_384_every_300():
    sizes = {"sota": {"a": (1024, 1024)}, "sior": {"b": (800, 800)}, "fast": {"c": (600, 600), "d": (300, 500)}}
    index = CropIndex.build(sizes, 384, 300)
    # 1024: starts 0, 300, 600, 640; 800: 0, 300, 416; 600: 0, 216; 300 < 384: one row of the whole height
    assert index.counts() == {"sota": 16, "sior": 9, "fast": 4 + 2}
    for i in range(len(index)):
        top, bottom, left, right = index.windows[i].tolist()
        height, width = sizes[index.subsets[index.subset_of[i]]][index.names[index.image_of[i]]]
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        assert (bottom - top, right - left) == (min(384, height), min(384, width))
    covered = np.zeros((1024, 1024), bool)
    for top, bottom, left, right in index.windows[index.subset_of == 0].tolist():
        covered[top:bottom, left:right] = True
    assert covered.all()


def test_random_resized_window_is_torchvisions_rule():
    from torchvision.transforms import RandomResizedCrop

    rng = np.random.default_rng(0)
    shares, aspects = [], []
    for _ in range(3000):
        top, bottom, left, right = random_resized_window(384, 384, (0.2, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top < bottom <= 384 and 0 <= left < right <= 384
        shares.append((bottom - top) * (right - left) / 384**2)
        aspects.append((right - left) / (bottom - top))
    assert 0.19 < min(shares) and max(shares) <= 1.0 and 0.74 < min(aspects) and max(aspects) < 1.35
    torch.manual_seed(0)
    reference = [RandomResizedCrop.get_params(torch.empty(3, 384, 384), [0.2, 1.0], [3 / 4, 4 / 3])
                 for _ in range(3000)]
    expected = np.mean([h * w / 384**2 for _, _, h, w in reference])
    assert np.mean(shares) == pytest.approx(expected, abs=0.015)
    # no draw fits (aspect 2-3 at nearly the whole area): the central crop of the nearest ratio, as torchvision
    _, _, h, w = RandomResizedCrop.get_params(torch.empty(3, 300, 300), [0.99, 1.0], [2.0, 3.0])
    assert random_resized_window(300, 300, (0.99, 1.0), (2.0, 3.0), rng) == Window(75, 75 + h, 0, w)


def test_transform_resizes_the_part_bicubic_flips_and_normalises():
    pixels = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    transform = MAETransform(input_size=24, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0)
    window, flip = transform.plan(Window(10, 50, 20, 60))
    assert window == Window(10, 50, 20, 60) and flip
    sample = transform.finish(pixels, flip)
    resized = np.asarray(Image.fromarray(pixels).resize((24, 24), Image.Resampling.BICUBIC))[:, ::-1]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    assert sample.shape == (3, 24, 24) and sample.dtype == torch.float32
    np.testing.assert_allclose(sample.numpy(), expected, atol=1e-5)


def datamodule(subsets, tmp_path, **kwargs) -> MAEDataModule:
    spec = {k: {"root": str(v), "classes": k} for k, v in subsets.items()}
    args = dict(subsets=spec, crops={"size": 48, "stride": 16}, transform={"input_size": 32}, batch_size=8,
                num_workers=0, pin_memory=False, cache={"enabled": True, "dir": str(tmp_path / "cache")})
    return MAEDataModule(**{**args, **kwargs})


def test_datamodule_counts_the_crops_of_the_training_images_and_reads_windows(generated_subsets, tmp_path, caplog):
    dm = datamodule(generated_subsets, tmp_path)
    dm.prepare_data()
    with caplog.at_level("INFO", logger="samrs.data.mae"):
        dm.setup("fit")
    train = {k: (v / "train.txt").read_text().split() for k, v in generated_subsets.items()}
    # 64 px images, 48 px crops every 16 px: starts 0 and 16 per axis, four crops per training image
    assert dm.train_set.index.counts() == {k: 4 * len(v) for k, v in train.items()}
    total = 4 * sum(len(v) for v in train.values())
    assert f"{total:,} crops in all" in caplog.text and "609,707" in caplog.text
    # only the training images are cached
    cached = {p.stem for k in generated_subsets for p in dm.cache_of(k).reader.directory.glob("*.blk")}
    assert cached == {n for names in train.values() for n in names}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert dm.val_dataloader() == []


def test_a_sample_is_the_transformed_window_of_its_crop(generated_subsets, tmp_path):
    dm = datamodule(generated_subsets, tmp_path, transform={"input_size": 32, "scale": [1.0, 1.0],
                                                           "ratio": [1.0, 1.0], "hflip": 0.0})
    dm.prepare_data()
    dm.setup("fit")
    index = dm.train_set.index
    i = len(index) - 1  # the last crop of the last image: the bottom-right window
    name, subset = index.names[index.image_of[i]], index.subsets[index.subset_of[i]]
    assert index.windows[i].tolist() == [16, 64, 16, 64]
    image = np.asarray(Image.open(generated_subsets[subset] / "images" / f"{name}.png").convert("RGB"))
    expected = MAETransform(input_size=32, scale=(1, 1), ratio=(1, 1), hflip=0.0).finish(image[16:64, 16:64], False)
    torch.testing.assert_close(dm.train_set[i]["image"], expected)
    block = BlockFile(dm.cache_of(subset).reader.directory / f"{name}.blk")
    assert np.array_equal(block.read_image(Window(3, 40, 5, 60)), block.read(Window(3, 40, 5, 60))[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cache": {"enabled": False}}, "data.cache.enabled=true"),
    ({"crops": {"size": 48, "stride": 64}}, "data.crops.stride=64"),
    ({"transform": {"scale": [0.0, 1.0]}}, "data.transform.scale"),
])
def test_bad_settings_name_their_key(generated_subsets, tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        datamodule(generated_subsets, tmp_path, **kwargs)


def test_a_batch_larger_than_the_crops_is_refused(generated_subsets, tmp_path):
    dm = datamodule(generated_subsets, tmp_path, batch_size=100_000)
    dm.prepare_data()
    dm.setup("fit")
    with pytest.raises(ConfigError, match="data.batch_size=100000"):
        dm.train_dataloader()
