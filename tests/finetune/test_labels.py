"""Label codings of the fine-tuning configs, on the real Potsdam crop and iSAID P0003 of ../shared/samples."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from samrs.classes import subset_classes
from samrs.data.labels import LabelCoding, UnknownLabelError
from samrs.utils.io import read_label, read_rgb

from finetune_helpers import ISAID_SAMPLE, POTSDAM_SAMPLE, compose_train

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


@pytest.fixture(scope="module")
def potsdam_crop(samples_dir):
    root = samples_dir / POTSDAM_SAMPLE
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    name = "2_10_0_0_512_512.png"
    return read_rgb(root / "img_dir" / name), root / "ann_dir" / name


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


def test_isprs_colour_labels_decode_like_mmseg_ids(potsdam_crop, tmp_path):
    """The crop's label painted back in the ISPRS colours (what the official TIFFs hold) decodes to
    the same classes through the colour coding of data=potsdam, in 5 and in 6 classes."""
    _, label_path = potsdam_crop
    raw = read_label(label_path)
    painted = np.zeros((*raw.shape, 3), np.uint8)
    for value, color in MMSEG_VALUE_COLORS.items():
        painted[raw == value] = color
    painted[:40, :40] = MMSEG_VALUE_COLORS[6]  # some clutter, which the crop lacks
    raw = raw.copy()
    raw[:40, :40] = 6
    tif = tmp_path / "top_potsdam_2_10_label_noBoundary.tif"
    Image.fromarray(painted).save(tif)
    ids_path = tmp_path / "ids.png"
    Image.fromarray(raw).save(ids_path)
    for classes in ("potsdam", "potsdam_with_clutter"):
        from_colors = coding("potsdam").decoder(subset_classes(classes))(tif)
        from_ids = coding("potsdam_mmseg").decoder(subset_classes(classes))(ids_path)
        np.testing.assert_array_equal(from_colors, from_ids)
    clutter = coding("potsdam").decoder(subset_classes("potsdam_with_clutter"))(tif)[:40, :40]
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
