"""Subset layouts, the checks on every pair (with their messages), block files and the cache."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from samrs.data.blocks import BlockCodec, BlockFile, Window, write_block_file
from samrs.data.cache import SubsetCache
from samrs.data.dataset import SegmentationDataset
from samrs.data.layout import SubsetLayout, missing_files
from samrs.data.readers import FileReader
from samrs.data.transforms import train_transform
from samrs.sources.base import BadInputError
from samrs.utils.io import read_label, read_rgb, write_png

SOTA_CLASSES = 18


@pytest.fixture
def subset(generated_subsets, tmp_path) -> Path:
    """A private copy of the generated SOTA subset, free to break."""
    return Path(shutil.copytree(generated_subsets["sota"], tmp_path / "SOTA"))


def names_of(root: Path, split: str = "train") -> list[str]:
    return (root / f"{split}.txt").read_text().split()


def cache_for(root: Path, tmp_path: Path, layout: SubsetLayout = SubsetLayout(), codec: str = "png") -> SubsetCache:
    return SubsetCache.create(tmp_path / "cache", "sota", root, layout, SOTA_CLASSES, BlockCodec(codec=codec, block=16))


# ---- layouts ---------------------------------------------------------------------------------


def test_samrs_layout_reads_the_files_with_and_without_cache(subset, tmp_path):
    names = names_of(subset) + names_of(subset, "val")
    cache = cache_for(subset, tmp_path)
    entries = cache.build(names, progress=False)
    assert set(entries) == set(names) and all("shape" in e for e in entries.values())
    for reader in (FileReader(subset, SubsetLayout(), SOTA_CLASSES), cache.reader):
        sample = SegmentationDataset(names, reader)[3]
        assert np.array_equal(sample["image"], read_rgb(subset / "images" / f"{names[3]}.png"))
        assert np.array_equal(sample["mask"], read_label(subset / "labels" / f"{names[3]}.png"))


def test_plain_layout_with_other_folders_suffixes_and_split_files(subset, tmp_path):
    """The official release's shape: gray/ labels, JPEG images, valid.txt listing names with suffix."""
    root = tmp_path / "release"
    names = names_of(subset)
    for name in names:
        image = read_rgb(subset / "images" / f"{name}.png")
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        write_png(root / "gray" / f"{name}.png", read_label(subset / "labels" / f"{name}.png"))
    (root / "train.txt").write_text("".join(f"{n}.jpg\n" for n in names[:6]))
    (root / "valid.txt").write_text("".join(f"JPEGImages/{n}.jpg\n" for n in names[6:]))
    layout = SubsetLayout(image_dir="JPEGImages", label_dir="gray", image_suffix=".jpg",
                          split_files={"train": "train.txt", "val": "valid.txt"})
    assert layout.split_names(root, "train") == names[:6] and layout.split_names(root, "val") == names[6:]
    data = SegmentationDataset(names[:6], FileReader(root, layout, SOTA_CLASSES), train_transform(crop_size=32))
    sample = data[0]
    assert sample["image"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)


def test_split_derived_by_name_hash_when_no_split_file(subset):
    layout = SubsetLayout(split_files={"train": None, "val": None}, val_fraction=0.3)
    train, val = layout.split_names(subset, "train"), layout.split_names(subset, "val")
    everything = sorted(p.stem for p in (subset / "images").glob("*.png"))
    assert val and not set(train) & set(val) and sorted(train + val) == everything
    assert layout.split_names(subset, "val") == val  # deterministic


def test_split_file_problems_are_named(subset):
    layout = SubsetLayout(split_files={"train": "train.txt", "val": "missing.txt"})
    with pytest.raises(FileNotFoundError, match="missing.txt: split file not found"):
        layout.split_names(subset, "val")
    (subset / "train.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="train.txt: the split lists no images"):
        layout.split_names(subset, "train")
    (subset / "train.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="1 names listed more than once \\(first: a\\)"):
        layout.split_names(subset, "train")
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        SubsetLayout(image_dir="rgb", split_files={"train": None}).split_names(subset, "train")


def test_names_with_folders_sibling_image_and_label_folders_and_pattern_lists(tmp_path):
    """LoveDA's shape: name Train/Urban/7 is Train/Urban/images_png/7.png + Train/Urban/masks_png/7.png;
    a split lists one pattern per domain folder, or names and patterns mixed."""
    for folder, names in {"Train/Urban": ["7", "12"], "Train/Rural": ["3"]}.items():
        for name in names:
            write_png(tmp_path / folder / "images_png" / f"{name}.png", np.zeros((4, 4, 3), np.uint8))
            write_png(tmp_path / folder / "masks_png" / f"{name}.png", np.zeros((4, 4), np.uint8))
    layout = SubsetLayout(image_dir="", label_dir="", image_subdir="images_png", label_subdir="masks_png",
                          split_files={"train": ["Train/Urban/*", "Train/Rural/*"],
                                       "val": ["Train/Rural/3", "Train/Urban/1*"],
                                       "twice": ["Train/Urban/7", "Train/Urban/*"], "none": ["Train/Urban/9*"],
                                       "absent": ["Test/Urban/*"]})
    train = layout.split_names(tmp_path, "train")
    assert train == ["Train/Urban/12", "Train/Urban/7", "Train/Rural/3"]
    assert layout.split_names(tmp_path, "val") == ["Train/Rural/3", "Train/Urban/12"]
    assert layout.image_path(tmp_path, "Train/Urban/7") == tmp_path / "Train/Urban/images_png/7.png"
    assert layout.label_path(tmp_path, "Train/Urban/7") == tmp_path / "Train/Urban/masks_png/7.png"
    with pytest.raises(ValueError, match="1 names listed more than once"):
        layout.split_names(tmp_path, "twice")
    with pytest.raises(ValueError, match=r"no image name matches split_files.none='Train/Urban/9\*'"):
        layout.split_names(tmp_path, "none")
    with pytest.raises(FileNotFoundError, match=r"Test/Urban/images_png: image folder not found"):
        layout.split_names(tmp_path, "absent")
    (tmp_path / "Train/Rural/masks_png/3.png").unlink()
    problems = missing_files(tmp_path, layout, train)
    assert list(problems) == ["Train/Rural/3"]
    assert problems["Train/Rural/3"].path.endswith("Train/Rural/masks_png/3.png")
    # a file name prefix belongs to the file, not to the name's folder
    write_png(tmp_path / "img" / "a" / "top_x.png", np.zeros((4, 4, 3), np.uint8))
    prefixed = SubsetLayout(image_dir="img", image_prefix="top_", split_files={"train": "a/*"})
    assert prefixed.split_names(tmp_path, "train") == ["a/x"]
    assert prefixed.image_path(tmp_path, "a/x") == tmp_path / "img" / "a" / "top_x.png"


# ---- checks ----------------------------------------------------------------------------------


def break_files(root: Path) -> dict[str, str]:
    """Damage four listed images in four ways; returns name -> expected message part."""
    names = names_of(root)
    (root / "labels" / f"{names[0]}.png").unlink()
    write_png(root / "labels" / f"{names[1]}.png", np.zeros((10, 12), np.uint8))
    label = read_label(root / "labels" / f"{names[2]}.png").copy()
    label[0, :3] = [18, 40, 40]
    write_png(root / "labels" / f"{names[2]}.png", label)
    (root / "images" / f"{names[3]}.png").write_bytes(b"\x89PNG truncated")
    return {
        names[0]: f"labels/{names[0]}.png: label of listed image {names[0]} not found",
        names[1]: f"labels/{names[1]}.png: label is 12x10 but image {names[1]}.png is 64x64",
        names[2]: f"labels/{names[2]}.png: label values 18, 40 are not class ids (0..17) nor 255",
        names[3]: f"images/{names[3]}.png: cannot decode it",
    }


def test_file_reader_names_the_bad_file(subset):
    expected = break_files(subset)
    reader = FileReader(subset, SubsetLayout(), SOTA_CLASSES)
    for name, message in expected.items():
        with pytest.raises(BadInputError, match=re.escape(message)):
            reader.open(name)


def test_cache_build_records_each_problem_and_keeps_the_good_images(subset, tmp_path):
    expected = break_files(subset)
    names = names_of(subset)
    cache = cache_for(subset, tmp_path)
    entries = cache.build(names, progress=False)
    for name in names:
        written = (cache.reader.directory / f"{name}.blk").is_file()
        if name in expected:
            problem = entries[name]["problem"]
            assert expected[name] in f"{problem['path']}: {problem['message']}" and not written
        else:
            assert entries[name]["shape"] == [64, 64] and written
    kinds = sorted(entries[n]["problem"]["kind"] for n in expected)
    assert kinds == ["invalid_label", "missing_annotation", "size_mismatch", "unreadable_image"]


def test_cache_rebuilds_only_what_changed(subset, tmp_path):
    names = names_of(subset)
    cache = cache_for(subset, tmp_path)
    cache.build(names, progress=False)
    blocks = {n: cache.reader.directory / f"{n}.blk" for n in names}
    before = {n: p.stat().st_mtime_ns for n, p in blocks.items()}
    label = read_label(subset / "labels" / f"{names[0]}.png").copy()
    label[:8, :8] = 5
    write_png(subset / "labels" / f"{names[0]}.png", label)
    os.utime(subset / "labels" / f"{names[0]}.png", ns=(1, 10**18))  # a different mtime for sure
    cache.build(names, progress=False)
    after = {n: p.stat().st_mtime_ns for n, p in blocks.items()}
    assert after[names[0]] != before[names[0]]
    assert all(after[n] == before[n] for n in names[1:])
    assert np.array_equal(cache.reader.open(names[0]).read(Window(0, 8, 0, 8))[1], np.full((8, 8), 5))
    # another codec re-encodes every block
    other = SubsetCache(cache.directory, cache.root, cache.layout, SOTA_CLASSES, BlockCodec(codec="raw", block=16))
    other.build(names, progress=False)
    assert all(BlockFile(p).codecs["image"] == "raw" for p in blocks.values())


# ---- block files -----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["png", "raw", "jpeg"])
def test_block_file_windows_match_the_arrays(tmp_path, codec):
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (83, 101, 3), dtype=np.uint8), (9, 9), 3)
    image[:40, :50] = (10, 20, 30)  # constant blocks
    label = np.full((83, 101), 255, np.uint8)
    label[30:60, 20:90] = rng.integers(0, 18, (30, 70))
    write_block_file(tmp_path / "x.blk", image, label, BlockCodec(codec=codec, block=16), {"k": 1})
    blocks = BlockFile(tmp_path / "x.blk")
    assert (blocks.height, blocks.width, blocks.source) == (83, 101, {"k": 1})
    for _ in range(25):
        top, left = rng.integers(0, 83), rng.integers(0, 101)
        window = Window(int(top), int(rng.integers(top + 1, 84)), int(left), int(rng.integers(left + 1, 102)))
        got_image, got_label = blocks.read(window)
        want = image[window.top:window.bottom, window.left:window.right]
        assert np.array_equal(got_label, label[window.top:window.bottom, window.left:window.right])
        error = np.abs(got_image.astype(int) - want.astype(int))
        if codec == "jpeg":  # the lossy option: close, not equal
            assert error.mean() < 4
        else:
            assert error.max() == 0
    with pytest.raises(ValueError, match="outside the 83x101 image"):
        blocks.read(Window(0, 84, 0, 10))


def test_block_file_rejects_other_files(tmp_path):
    (tmp_path / "x.blk").write_bytes(b"not a block file")
    with pytest.raises(OSError, match="not a samrs block file"):
        BlockFile(tmp_path / "x.blk")


def test_meta_json_classes_must_match(subset, tmp_path):
    from samrs.data.datamodule import SAMRSDataModule

    meta = json.loads((subset / "meta.json").read_text())
    assert len(meta["classes"]) == SOTA_CLASSES
    data = SAMRSDataModule({"sota": {"root": str(subset), "classes": "fast"}}, batch_size=2, num_workers=0,
                           cache={"enabled": False})
    with pytest.raises(ValueError, match="meta.json: lists 18 classes .*sota.classes=fast has 37"):
        data.setup("fit")


def test_cache_workers_start_after_the_parent_used_opencv_threads(subset, tmp_path):
    """A parent that has run OpenCV's thread pool (a training's augmentation) then builds a cache
    with worker processes: they must not hang (cv2.setNumThreads in a forked child waits forever on
    threads it does not have). Run in a child process so that a hang fails by timeout."""
    import textwrap

    script = textwrap.dedent(f"""
        import cv2, numpy as np
        from samrs.data.blocks import BlockCodec
        from samrs.data.cache import SubsetCache
        from samrs.data.layout import SubsetLayout
        image = np.random.rand(3000, 3000).astype(np.float32)
        for _ in range(3):  # starts OpenCV's worker threads in this process
            cv2.warpAffine(image, np.float32([[1.1, 0.1, 0], [0.1, 0.9, 0]]), (3000, 3000))
        threads = cv2.getNumThreads()
        cache = SubsetCache.create({str(tmp_path / 'cache')!r}, "sota", {str(subset)!r}, SubsetLayout(), 18,
                                   BlockCodec(block=16))
        names = open({str(subset / 'train.txt')!r}).read().split()
        entries = cache.build(names, workers=2, progress=False)
        assert len(entries) == len(names) and all("shape" in e for e in entries.values())
        assert cv2.getNumThreads() == threads  # restored for the rest of the run
        print("built", len(entries))
    """)
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0 and "built" in run.stdout, run.stderr[-2000:]
