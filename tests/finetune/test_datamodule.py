"""The fine-tuning data configs (data=potsdam*, isaid*; the mmseg layouts and missing roots of
vaihingen and loveda too): layouts, scene cache, tiles, fractions, whole-scene validation, bad label
files. test_vaihingen_loveda.py has the rest of Vaihingen and LoveDA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from finetune_helpers import POTSDAM_SAMPLE, VAIHINGEN_SAMPLE, finetune_data, ready
from PIL import Image

from samrs.classes import POTSDAM, POTSDAM_WITH_CLUTTER
from samrs.data.blocks import Window
from samrs.data.layout import SubsetLayout
from samrs.scenes.finetune import landcover_scene
from samrs.utils.io import read_label

TRAIN = ["2_10", "2_11", "3_10", "3_11"]  # data=potsdam_debug: 192 px scenes, 96 px tiles every 64 px


def test_generated_potsdam_is_written_in_potsdams_layout(potsdam_dir):
    root = potsdam_dir / "generated" / "potsdam"
    for name in [*TRAIN, "2_13", "2_14"]:
        assert (root / "2_Ortho_RGB" / f"top_potsdam_{name}_RGB.tif").is_file()
        label = np.asarray(Image.open(root / "5_Labels_all_noBoundary" / f"top_potsdam_{name}_label_noBoundary.tif"))
        assert label.shape == (192, 192, 3)


def test_potsdam_tiles_batches_and_whole_scene_validation(potsdam_dir):
    module = ready(finetune_data("potsdam_debug", potsdam_dir))
    assert module.subset_names == ["potsdam"] and module.num_classes == {"potsdam": 5}
    assert len(module.train_sets["potsdam"]) == 4 * 3 * 3  # tiles at 0, 64, 96 on both axes
    index = json.loads(module.tile_index_path.read_text())
    assert (index["size"], index["stride"], len(index["tiles"])) == (96, 64, 36)
    batch = next(iter(module.train_dataloader()))["potsdam"]
    assert batch["image"].shape == (4, 3, 96, 96) and batch["mask"].shape == (4, 96, 96)
    assert set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, 255}
    (val,) = module.val_dataloader()
    scenes = list(val)
    assert [s["name"] for s in scenes] == [["2_13"], ["2_14"]]
    assert scenes[0]["image"].shape == (1, 3, 192, 192) and scenes[0]["mask"].shape == (1, 192, 192)
    assert scenes[0]["image"].dtype == torch.float32 and abs(float(scenes[0]["image"].mean())) < 3


def test_official_protocol_validates_on_the_tiles_of_the_validation_scenes(potsdam_dir):
    """data.val_mode=tiles (the ft_* experiments): the validation scenes cut as the training scenes,
    every tile a sample of its own whose pixels are its window of the scene."""
    whole = ready(finetune_data("potsdam_debug", potsdam_dir), "validate")
    assert whole.val_mode == "whole"
    scenes = {s["name"][0]: s for s in whole.val_dataloader()[0]}
    module = ready(finetune_data("potsdam_debug", potsdam_dir, "data.val_mode=tiles"), "validate")
    tiles = list(module.val_dataloader()[0])
    starts = [0, 64, 96]  # 96 px tiles every 64 px over 192 px scenes, the last shifted back
    assert [t["name"][0] for t in tiles] == [f"{scene}__96__{x}___{y}" for scene in ("2_13", "2_14")
                                             for y in starts for x in starts]
    for tile in tiles:
        scene, _, x, y = tile["name"][0].replace("___", "__").split("__")
        x, y = int(x), int(y)
        assert tile["image"].shape == (1, 3, 96, 96)
        torch.testing.assert_close(tile["image"], scenes[scene]["image"][:, :, y:y + 96, x:x + 96])
        torch.testing.assert_close(tile["mask"], scenes[scene]["mask"][:, y:y + 96, x:x + 96])


def test_cached_labels_are_the_generated_classes(potsdam_dir):
    """Through the colour coding and the cache: class ids of the 5-class list, clutter and the black
    borders ignored."""
    module = ready(finetune_data("potsdam_debug", potsdam_dir))
    sample = module.split_cache("train").reader.open("2_11")
    _, label = sample.read(Window.full(sample.height, sample.width))
    _, truth = landcover_scene(192, 1)  # scene 1 of the sorted names, seed 0
    border = label == 255
    inside = ~border & (truth != POTSDAM_WITH_CLUTTER.index("clutter"))
    expected = np.array([POTSDAM.index(n) if n in POTSDAM else 255 for n in POTSDAM_WITH_CLUTTER])[truth]
    np.testing.assert_array_equal(label[inside], expected[inside])
    assert (label[truth == POTSDAM_WITH_CLUTTER.index("clutter")] == 255).all()
    assert 0.02 < border.mean() < 0.3


def test_fraction_uses_the_expected_tiles_the_same_for_the_same_seed(potsdam_dir):
    runs = {seed: ready(finetune_data("potsdam_debug", potsdam_dir, "data.fraction=0.25", f"data.fraction_seed={seed}"))
            for seed in (0, 0, 1)}
    names = {seed: module.train_sets["potsdam"].names for seed, module in runs.items()}
    assert len(names[0]) == 9  # ceil(0.25 * 36)
    again = ready(finetune_data("potsdam_debug", potsdam_dir, "data.fraction=0.25"))
    assert again.train_sets["potsdam"].names == names[0] and names[1] != names[0]
    listing = again.tile_index_path.with_name(f"{again.tile_index_path.stem}-fraction0.25-seed0.txt")
    assert listing.read_text().split() == names[0]
    assert again.steps_per_epoch() == 3  # ceil(9 / batch 4)


def test_second_prepare_reuses_the_cache(potsdam_dir):
    module = finetune_data("potsdam_debug", potsdam_dir)
    blocks = sorted((module.split_cache("train").directory / "blocks").glob("*.blk"))
    assert len(blocks) == 6  # train and val scenes share the folders, so one cache
    stamps = [p.stat().st_mtime_ns for p in blocks]
    module.prepare_data()
    assert [p.stat().st_mtime_ns for p in blocks] == stamps


def test_isaid_background_is_a_class_left_out_of_the_means(isaid_dir):
    module = ready(finetune_data("isaid_debug", isaid_dir))
    assert module.num_classes == {"isaid": 16} and module.class_names["isaid"][0] == "background"
    assert module.metric_exclude == {"isaid": [0]}
    assert len(module.train_sets["isaid"]) == 4 * 2 * 2  # 224 px scenes, 128 px tiles at 0 and 96
    (val,) = module.val_dataloader()
    mask = next(iter(val))["mask"]
    assert mask.shape == (1, 224, 224) and 0 in mask.unique() and mask.max() < 16
    tiles = ready(finetune_data("isaid_debug", isaid_dir, "data.val_mode=tiles"), "validate").val_dataloader()[0]
    assert len(tiles) == 2 * 2 * 2 and next(iter(tiles))["mask"].shape == (1, 128, 128)
    ignored = ready(finetune_data("isaid_debug", isaid_dir, "data.classes=isaid"), "validate")
    assert ignored.num_classes == {"isaid": 15} and ignored.metric_exclude == {"isaid": []}


def test_bad_label_files_stop_or_are_skipped(potsdam_dir, tmp_path):
    root = tmp_path / "potsdam"
    shutil.copytree(potsdam_dir / "generated" / "potsdam", root)
    bad = root / "5_Labels_all_noBoundary" / "top_potsdam_2_10_label_noBoundary.tif"
    label = np.asarray(Image.open(bad)).copy()
    label[5:9, 5:9] = (12, 34, 56)
    Image.fromarray(label).save(bad)
    (root / "2_Ortho_RGB" / "top_potsdam_3_11_RGB.tif").unlink()
    args = ("data.generate=null", f"data.root={root}")
    with pytest.raises(ValueError, match=r"2 of 4 images are unusable") as err:
        ready(finetune_data("potsdam_debug", tmp_path, *args))
    assert "top_potsdam_2_10_label_noBoundary.tif: 16 pixels of colours (12, 34, 56)" in str(err.value)
    assert "top_potsdam_3_11_RGB.tif" in str(err.value)
    assert "data.on_error=skip" in str(err.value)
    skipped = ready(finetune_data("potsdam_debug", tmp_path, *args, "data.on_error=skip"))
    assert {n.split("__")[0] for n in skipped.train_sets["potsdam"].names} == {"2_11", "3_10"}
    # a root where no image is usable is a wrong root, not bad files to skip
    empty = tmp_path / "empty_potsdam"
    shutil.copytree(root, empty)
    for image in (empty / "2_Ortho_RGB").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=r"4 of 4 images are unusable .*none is usable: check the subset's root"):
        ready(finetune_data("potsdam_debug", tmp_path, "data.generate=null", f"data.root={empty}"))


@pytest.mark.parametrize("config", ["potsdam", "isaid", "vaihingen", "loveda"])
def test_a_missing_data_root_is_named_once(config, tmp_path):
    module = finetune_data(config, tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{config}: no data at {tmp_path}/\S+; point data.root"):
        module.prepare_data()


def test_names_must_be_strings():
    layout = SubsetLayout(split_files={"train": [210]})
    with pytest.raises(ValueError, match="quote them"):
        layout.split_names(Path("/nonexistent"), "train")


@pytest.mark.parametrize("dataset,sample,stem", [("potsdam", POTSDAM_SAMPLE, "2_10_0_0_512_512"),
                                                  ("vaihingen", VAIHINGEN_SAMPLE, "area1_0_0_512_512")])
def test_mmseg_converted_isprs_reads_the_real_crop(dataset, sample, stem, samples_dir, tmp_path):
    sample = samples_dir / sample
    if not sample.is_dir():
        pytest.skip(f"{sample} not found")
    root = tmp_path / f"{dataset}_mmseg"
    name = f"{stem}.png"
    for split in ("train", "val"):
        for folder in ("img_dir", "ann_dir"):
            (root / folder / split).mkdir(parents=True)
            shutil.copy(sample / folder / name, root / folder / split / name)
    module = ready(finetune_data(f"{dataset}_mmseg", tmp_path, "data.num_workers=0", "data.batch_size=2"))
    assert module.train_sets[dataset].names == [f"train/{stem}__512__0___0"]
    (val,) = module.val_dataloader()
    scene = next(iter(val))
    assert scene["name"] == [f"val/{stem}"]
    raw = read_label(sample / "ann_dir" / name)
    expected = np.where(raw == 0, 255, raw.astype(int) - 1)
    np.testing.assert_array_equal(scene["mask"][0].numpy(), expected)
    # the official protocol's tiles of a converted crop: the crop itself, under its own name
    tiles = ready(finetune_data(f"{module.name}_mmseg", tmp_path, "data.num_workers=0", "data.val_mode=tiles"),
                  "validate")
    tile = next(iter(tiles.val_dataloader()[0]))
    assert tile["name"] == scene["name"] and torch.equal(tile["mask"], scene["mask"])
