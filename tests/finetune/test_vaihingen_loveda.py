"""ISPRS Vaihingen and LoveDA as fine-tuning sets: their released layouts (generated scenes, and the real
Vaihingen crop and LoveDA tile of ../shared/samples put into them), official splits, tiles, labels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from finetune_helpers import LOVEDA_SAMPLE, VAIHINGEN_SAMPLE, compose_train, finetune_data, ready
from hydra.utils import instantiate
from PIL import Image

from samrs.classes import POTSDAM_COLORS, POTSDAM_WITH_CLUTTER, VAIHINGEN
from samrs.data.blocks import Window
from samrs.data.layout import SubsetLayout
from samrs.scenes.finetune import landcover_scene, write_loveda_like, write_vaihingen_like
from samrs.utils.io import read_label, read_rgb

# the ISPRS benchmark's Vaihingen areas: 16 with public labels for training, 17 for testing
TRAIN_AREAS = [1, 3, 5, 7, 11, 13, 15, 17, 21, 23, 26, 28, 30, 32, 34, 37]
TEST_AREAS = [2, 4, 6, 8, 10, 12, 14, 16, 20, 22, 24, 27, 29, 31, 33, 35, 38]
ERODED = "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE"
# the real configs' loaders, in-process
QUIET = ("data.num_workers=0", "data.val_num_workers=0", "data.pin_memory=false")


def whole(module, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(image, decoded label) of a scene as the cache holds it."""
    sample = module.split_cache(split).reader.open(name)
    return sample.read(Window.full(sample.height, sample.width))


def test_vaihingen_reads_the_release_with_the_official_split(tmp_path):
    cfg = compose_train(["data=vaihingen", f"paths.data_dir={tmp_path}"])
    module = instantiate(cfg.data)
    assert sorted(int(n[4:]) for n in module.scene_names("train")) == TRAIN_AREAS
    assert sorted(int(n[4:]) for n in module.scene_names("val")) == TEST_AREAS
    assert (module.tile_size, module.tile_stride, module.classes_of("vaihingen").names) == (512, 256, VAIHINGEN)
    train = module.split_layouts["train"]
    root = tmp_path / "vaihingen"
    assert train.image_path(root, "area1") == root / "top" / "top_mosaic_09cm_area1.tif"
    assert train.label_path(root, "area1") == root / ERODED / "top_mosaic_09cm_area1_noBoundary.tif"


def test_generated_vaihingen_tiles_labels_and_whole_scene_validation(vaihingen_dir):
    root = vaihingen_dir / "generated" / "vaihingen"
    module = ready(finetune_data("vaihingen_debug", vaihingen_dir))
    assert module.num_classes == {"vaihingen": 5}
    # 200 x 150 scenes, 96 px tiles every 48 px: rows at 0, 48, 96, 104, columns at 0, 48, 54
    tiles = json.loads(module.tile_index_path.read_text())["tiles"]
    assert {(top, left) for _, scene, top, _, left, _ in tiles if scene == "area1"} == {
        (t, c) for t in (0, 48, 96, 104) for c in (0, 48, 54)}
    assert len(module.train_sets["vaihingen"]) == 4 * 12
    (val,) = module.val_dataloader()
    scenes = list(val)
    assert [s["name"] for s in scenes] == [["area2"], ["area4"]]
    assert scenes[0]["image"].shape == (1, 3, 200, 150) and scenes[0]["mask"].shape == (1, 200, 150)
    # through the ISPRS colours: the generated classes, clutter and the black borders ignored
    image, label = whole(module, "train", "area3")
    names = sorted(f"area{a}" for a in (1, 2, 3, 4, 5, 7))
    _, truth = landcover_scene((200, 150), names.index("area3"))
    expected = np.array([VAIHINGEN.index(n) if n in VAIHINGEN else 255 for n in POTSDAM_WITH_CLUTTER])[truth]
    kept = label != 255
    np.testing.assert_array_equal(label[kept], expected[kept])
    assert 0.02 < (expected != label).mean() < 0.3  # the borders
    assert np.array_equal(image, read_rgb(root / "top" / "top_mosaic_09cm_area3.tif"))
    infrared, red, _ = image[label == VAIHINGEN.index("tree")].mean(axis=0)  # IRRG
    assert infrared > red + 50


def test_real_vaihingen_crop_in_the_release_layout(samples_dir, tmp_path):
    """The real IRRG crop and its label painted in the ISPRS colours (borders black), as the release's
    TIFFs: bands kept in order, labels as mmseg decodes them, 9 tiles of 256 px every 128 px."""
    sample = samples_dir / VAIHINGEN_SAMPLE
    if not sample.is_dir():
        pytest.skip(f"{sample} not found")
    image = read_rgb(sample / "img_dir" / "area1_0_0_512_512.png")
    raw = read_label(sample / "ann_dir" / "area1_0_0_512_512.png")
    palette = np.array([(0, 0, 0), *(POTSDAM_COLORS[n] for n in POTSDAM_WITH_CLUTTER)], np.uint8)
    root = tmp_path / "vaihingen"
    (root / "top").mkdir(parents=True)
    (root / ERODED).mkdir()
    Image.fromarray(image).save(root / "top" / "top_mosaic_09cm_area1.tif")
    Image.fromarray(palette[raw]).save(root / ERODED / "top_mosaic_09cm_area1_noBoundary.tif")
    module = ready(finetune_data("vaihingen", tmp_path, "data.splits.train.names=[area1]",
                                 "data.splits.val.names=[area1]", "data.tiling.size=256", "data.tiling.stride=128",
                                 "data.train_transform.crop_size=256", *QUIET))
    assert len(module.train_sets["vaihingen"]) == 9
    cached, label = whole(module, "val", "area1")
    assert np.array_equal(cached, image)
    np.testing.assert_array_equal(label, np.where(raw == 0, 255, raw.astype(np.int16) - 1))


def test_generated_loveda_in_its_domain_folders(loveda_dir):
    root = loveda_dir / "generated" / "LoveDA"
    module = ready(finetune_data("loveda_debug", loveda_dir))
    assert module.num_classes == {"loveda": 7} and module.metric_exclude == {"loveda": []}
    train = ["Train/Urban/0", "Train/Urban/2", "Train/Rural/1", "Train/Rural/3"]
    assert module.scene_names("train") == train and module.scene_names("val") == ["Val/Urban/4", "Val/Rural/5"]
    assert module.train_sets["loveda"].names == [f"{n}__128__0___0" for n in train]  # an image is a tile
    no_data = 0
    for name in train:
        folder, _, number = name.rpartition("/")
        raw = read_label(root / folder / "masks_png" / f"{number}.png")
        image, label = whole(module, "train", name)
        np.testing.assert_array_equal(label, np.where(raw == 0, 255, raw.astype(np.int16) - 1))
        assert np.array_equal(image, read_rgb(root / folder / "images_png" / f"{number}.png"))
        assert (image[raw == 0] == 0).all()  # no-data is black
        no_data += int((raw == 0).any())
    assert no_data > 0
    batch = next(iter(module.train_dataloader()))["loveda"]
    assert batch["image"].shape == (4, 3, 128, 128) and set(batch["mask"].unique().tolist()) <= {*range(7), 255}
    (val,) = module.val_dataloader()
    assert [s["name"] for s in val] == [["Val/Urban/4"], ["Val/Rural/5"]]


def test_real_loveda_tile_in_the_release_layout(samples_dir, tmp_path):
    """The real 1024 px tile as Train/Urban/0 and Val/Urban/1 of an urban-only LoveDA: one tile per
    image, masks as mmseg reads them."""
    sample = samples_dir / LOVEDA_SAMPLE
    if not sample.is_dir():
        pytest.skip(f"{sample} not found")
    for split, number in (("Train", 0), ("Val", 1)):
        for source, target in (("img_dir", "images_png"), ("ann_dir", "masks_png")):
            folder = tmp_path / "LoveDA" / split / "Urban" / target
            folder.mkdir(parents=True)
            shutil.copy(sample / source / "0.png", folder / f"{number}.png")
    module = ready(finetune_data("loveda", tmp_path, "data.splits.train.names=[Train/Urban/*]",
                                 "data.splits.val.names=[Val/Urban/*]", *QUIET))
    assert module.train_sets["loveda"].names == ["Train/Urban/0__1024__0___0"]
    (val,) = module.val_dataloader()
    scene = next(iter(val))
    assert scene["name"] == ["Val/Urban/1"] and scene["image"].shape == (1, 3, 1024, 1024)
    raw = read_label(sample / "ann_dir" / "0.png")
    np.testing.assert_array_equal(scene["mask"][0].numpy(), np.where(raw == 0, 255, raw.astype(int) - 1))


def test_generated_data_needs_listings_it_can_fill(tmp_path):
    """The generators write scenes where the split listings say: names for ISPRS-like scenes, folder
    patterns for LoveDA-like ones; anything else is a configuration error naming the key."""
    named = {"train": SubsetLayout(split_files={"train": ["Train/Urban/0"]})}
    with pytest.raises(ValueError, match=r"data.splits.train.names as folder patterns"):
        write_loveda_like(tmp_path, named, {"train": 1})
    patterned = {"val": SubsetLayout(split_files={"val": "area*"})}
    with pytest.raises(ValueError, match=r"data.splits.val.names as a list of scene names"):
        write_vaihingen_like(tmp_path, patterned)
    narrow = {"train": SubsetLayout(image_dir="", split_files={"train": ["Train/Urban/1*"]})}
    with pytest.raises(ValueError, match="scene Train/Urban/0 does not match"):
        write_loveda_like(tmp_path, narrow, {"train": 1})
