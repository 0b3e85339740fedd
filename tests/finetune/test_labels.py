"""Label codings of the fine-tuning configs, on the real Potsdam and Vaihingen crops, iSAID P0003 and
the LoveDA tile of ../shared/samples."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from samrs.classes import subset_classes
from samrs.data.labels import LabelCoding, UnknownLabelError
from samrs.utils.io import read_label, read_rgb

from finetune_helpers import ISAID_SAMPLE, LOVEDA_SAMPLE, POTSDAM_SAMPLE, VAIHINGEN_SAMPLE, compose_train

# The ISPRS colour of each value mmseg's Potsdam converter writes (its colour table, read as RGB).
MMSEG_VALUE_COLORS = {0: (0, 0, 0), 1: (255, 255, 255), 2: (0, 0, 255), 3: (0, 255, 255), 4: (0, 255, 0),
                      5: (255, 255, 0), 6: (255, 0, 0)}
# iSAID's class colours (iSAID devkit), background black.
ISAID_COLORS = {"ship": (0, 0, 63), "storage-tank": (0, 63, 63), "baseball-diamond": (0, 63, 0),
                "tennis-court": (0, 63, 127), "basketball-court": (0, 63, 191), "ground-track-field": (0, 63, 255),
                "bridge": (0, 127, 63), "large-vehicle": (0, 127, 127), "small-vehicle": (0, 0, 127),
                "helicopter": (0, 0, 191), "swimming-pool": (0, 0, 255), "roundabout": (0, 191, 127),
                "soccer-ball-field": (0, 127, 191), "plane": (0, 127, 255), "harbor": (0, 100, 155)}


def coding(config: str) -> LabelCoding:
    cfg = compose_train([f"data={config}"])
    return LabelCoding(**OmegaConf.to_container(cfg.data.labels))


# mmseg's converted ISPRS crops in ../shared/samples: dataset -> (folder, file name)
ISPRS_CROPS = {"potsdam": (POTSDAM_SAMPLE, "2_10_0_0_512_512.png"),
               "vaihingen": (VAIHINGEN_SAMPLE, "area1_0_0_512_512.png")}


def isprs_crop(samples_dir, dataset: str):
    """(image, label path) of the real crop of `dataset`."""
    folder, name = ISPRS_CROPS[dataset]
    root = samples_dir / folder
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return read_rgb(root / "img_dir" / name), root / "ann_dir" / name


@pytest.fixture(scope="module")
def potsdam_crop(samples_dir):
    return isprs_crop(samples_dir, "potsdam")


def test_mmseg_potsdam_ids_decode_to_the_five_classes(potsdam_crop):
    image, label_path = potsdam_crop
    raw = read_label(label_path)
    decoded = coding("potsdam_mmseg").decoder(subset_classes("potsdam"))(label_path)
    # value 0 (the black borders) and 6 (clutter) have no class; 1-5 are classes 0-4
    expected = np.where((raw == 0) | (raw == 6), 255, raw.astype(np.int16) - 1).astype(np.uint8)
    np.testing.assert_array_equal(decoded, expected)
    assert set(np.unique(decoded)) == {0, 1, 2, 3, 4, 255}
    names = subset_classes("potsdam").names

    def mean_rgb(name: str) -> np.ndarray:
        return image[decoded == names.index(name)].mean(axis=0)

    # what the crop shows: red-tiled roofs, grey paving brighter than the dark lawns
    roofs = mean_rgb("building")
    assert roofs[0] - roofs[2] > 30
    assert mean_rgb("impervious-surface").mean() > mean_rgb("low-vegetation").mean() + 15


def test_mmseg_vaihingen_ids_decode_to_the_five_classes_of_irrg_images(samples_dir):
    image, label_path = isprs_crop(samples_dir, "vaihingen")
    raw = read_label(label_path)
    decoded = coding("vaihingen_mmseg").decoder(subset_classes("vaihingen"))(label_path)
    expected = np.where((raw == 0) | (raw == 6), 255, raw.astype(np.int16) - 1).astype(np.uint8)
    np.testing.assert_array_equal(decoded, expected)
    assert set(np.unique(decoded)) == {0, 1, 2, 3, 4, 255}
    # value 0 is the eroded borders: lines between the regions, gone after a 7 x 7 erosion
    border = (raw == 0).astype(np.uint8)
    assert cv2.erode(border, np.ones((7, 7), np.uint8)).sum() < 0.01 * border.sum()
    # IRRG: vegetation reflects the near infrared (the first band) far above red and green; paving does not
    names = subset_classes("vaihingen").names
    for vegetation in ("low-vegetation", "tree"):
        infrared, red, green = image[decoded == names.index(vegetation)].mean(axis=0)
        assert infrared > red + 20 and infrared > green + 20
    infrared, red, _ = image[decoded == names.index("impervious-surface")].mean(axis=0)
    assert abs(infrared - red) < 10


@pytest.mark.parametrize("dataset", ["potsdam", "vaihingen"])
def test_isprs_colour_labels_decode_like_mmseg_ids(dataset, samples_dir, tmp_path):
    """The crop's label painted back in the ISPRS colours (what the official TIFFs hold) decodes to
    the same classes through the colour coding of data=<dataset>, in 5 and in 6 classes."""
    _, label_path = isprs_crop(samples_dir, dataset)
    raw = read_label(label_path)
    painted = np.zeros((*raw.shape, 3), np.uint8)
    for value, color in MMSEG_VALUE_COLORS.items():
        painted[raw == value] = color
    painted[:40, :40] = MMSEG_VALUE_COLORS[6]  # some clutter, which the crop lacks
    raw = raw.copy()
    raw[:40, :40] = 6
    tif = tmp_path / "label_noBoundary.tif"
    Image.fromarray(painted).save(tif)
    ids_path = tmp_path / "ids.png"
    Image.fromarray(raw).save(ids_path)
    for classes in (dataset, f"{dataset}_with_clutter"):
        from_colors = coding(dataset).decoder(subset_classes(classes))(tif)
        from_ids = coding(f"{dataset}_mmseg").decoder(subset_classes(classes))(ids_path)
        np.testing.assert_array_equal(from_colors, from_ids)
    clutter = coding(dataset).decoder(subset_classes(f"{dataset}_with_clutter"))(tif)[:40, :40]
    assert (clutter == 5).all()


def test_isaid_colour_masks_decode_with_and_without_background(samples_dir):
    path = samples_dir / ISAID_SAMPLE / "val/images/P0003_instance_color_RGB.png"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    rgb = read_rgb(path)
    with_background = coding("isaid").decoder(subset_classes("isaid_with_background"))(path)
    foreground_only = coding("isaid").decoder(subset_classes("isaid"))(path)
    background = (rgb == 0).all(axis=2)
    assert (with_background[background] == 0).all() and (foreground_only[background] == 255).all()
    counts = {}
    for i, (name, color) in enumerate(ISAID_COLORS.items()):
        pixels = (rgb == color).all(axis=2)
        assert (with_background[pixels] == i + 1).all() and (foreground_only[pixels] == i).all()
        counts[name] = int(pixels.sum())
    assert {k for k, n in counts.items() if n} == {"small-vehicle", "storage-tank", "large-vehicle"}
    assert background.sum() + sum(counts.values()) == rgb.shape[0] * rgb.shape[1]


def test_loveda_masks_decode_with_no_data_ignored(samples_dir, tmp_path):
    """mmseg's LoveDA reading: value 0 (no-data) ignored, values 1-7 the classes 0-6; beyond 7 an error."""
    root = samples_dir / LOVEDA_SAMPLE
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    raw = read_label(root / "ann_dir" / "0.png")
    decode = coding("loveda").decoder(subset_classes("loveda"))
    decoded = decode(root / "ann_dir" / "0.png")
    np.testing.assert_array_equal(decoded, raw.astype(np.int16) - 1)  # the tile has no no-data pixels
    names = subset_classes("loveda").names
    assert {names[c] for c in np.unique(decoded)} == {"background", "building", "road", "water", "agricultural"}
    image = read_rgb(root / "img_dir" / "0.png")
    assert image[decoded == names.index("building")].mean() > image[decoded == names.index("water")].mean() + 30
    edited = raw.copy()
    edited[:8] = 0
    Image.fromarray(edited).save(tmp_path / "nodata.png")
    assert (decode(tmp_path / "nodata.png")[:8] == 255).all()
    edited[0, 0] = 8
    Image.fromarray(edited).save(tmp_path / "eight.png")
    with pytest.raises(UnknownLabelError, match="eight.png: values 8"):
        decode(tmp_path / "eight.png")


def test_unknown_colours_and_values_are_errors_or_ignored(tmp_path):
    label = np.zeros((4, 6, 3), np.uint8)
    label[0, 0] = (255, 255, 255)
    label[1, 1] = (12, 34, 56)  # no ISPRS colour
    path = tmp_path / "label.png"
    Image.fromarray(label).save(path)
    strict = coding("potsdam")
    with pytest.raises(UnknownLabelError, match=r"label.png: 1 pixels of colours \(12, 34, 56\)"):
        strict.decoder(subset_classes("potsdam"))(path)
    lenient = LabelCoding(**{**strict.describe(), "unknown": "ignore"}).decoder(subset_classes("potsdam"))(path)
    assert lenient[0, 0] == 0 and lenient[1, 1] == 255 and lenient[0, 1] == 255  # black: ignored too
    ids = tmp_path / "ids.png"
    Image.fromarray(np.array([[1, 7]], np.uint8)).save(ids)
    with pytest.raises(UnknownLabelError, match="values 7"):
        coding("potsdam_mmseg").decoder(subset_classes("potsdam"))(ids)


def test_a_class_without_colour_is_a_configuration_error():
    colors = dict(coding("potsdam").colors)
    colors["buidling"] = colors.pop("building")
    with pytest.raises(ValueError, match="codes no building of class list potsdam"):
        LabelCoding(format="color", colors=colors).decoder(subset_classes("potsdam"))
