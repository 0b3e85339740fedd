"""Augmentation: labels stay on their pixels through every step, and the window-first transform
draws the same scales and crops, and produces the same pixels, as resizing the whole image."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.pytorch import ToTensorV2

from samrs.data.blocks import Window
from samrs.data.dataset import MultiSubsetDataset, SegmentationDataset
from samrs.data.readers import ArraySample
from samrs.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    RandomScaleCrop,
    WholeImage,
    color_ops,
    train_transform,
    val_transform,
)

PALETTE = np.array([[230, 30, 30], [30, 200, 40], [40, 60, 220], [240, 220, 30], [200, 40, 210],
                    [30, 210, 220]], np.uint8)
BACKGROUND = np.array([128, 128, 128], np.uint8)
NO_COLOUR = {"color": "none"}


def colour_scene(seed: int, height: int = 300, width: int = 260) -> tuple[np.ndarray, np.ndarray]:
    """Rectangles and discs of classes 0..5 on background 255; the image is the label drawn in
    one colour per class, so the label can be read back from the image."""
    rng = np.random.default_rng(seed)
    label = np.full((height, width), 255, np.uint8)
    for _ in range(14):
        cls = int(rng.integers(0, len(PALETTE)))
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
        if rng.random() < 0.5:
            h, w = rng.integers(14, 60, 2)
            label[max(0, cy - h // 2):cy + h // 2, max(0, cx - w // 2):cx + w // 2] = cls
        else:
            cv2.circle(label, (cx, cy), int(rng.integers(9, 35)), cls, -1)
    image = np.where(label[..., None] == 255, BACKGROUND, PALETTE[np.minimum(label, len(PALETTE) - 1)])
    return image.astype(np.uint8), label


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Undo Normalize + ToTensorV2."""
    mean, std = np.array(IMAGENET_MEAN) * 255, np.array(IMAGENET_STD) * 255
    return np.clip(image.permute(1, 2, 0).numpy() * std + mean + 0.5, 0, 255).astype(np.uint8)


def interior(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label (edges of regions are interpolated); the crop's
    own border is left out, its neighbourhood being partly outside."""
    lo = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)
    inside = lo == hi
    inside[[0, -1], :] = inside[:, [0, -1]] = False
    return inside


def decode_label(image: np.ndarray) -> np.ndarray:
    """Class of each pixel's colour (255 for the background grey, 254 for pad black)."""
    colours = np.concatenate([PALETTE, BACKGROUND[None], np.zeros((1, 3), np.uint8)]).astype(np.int32)
    ids = np.array(list(range(len(PALETTE))) + [255, 254])
    dist = np.abs(image[:, :, None, :].astype(np.int32) - colours[None, None]).sum(-1)
    return ids[dist.argmin(-1)]


def run(transform, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    window, params = transform.plan(*label.shape)
    top, bottom, left, right = window
    out = transform.finish(image[top:bottom, left:right], label[top:bottom, left:right], params)
    return to_uint8(out["image"]), out["mask"].numpy()


GEOMETRIC_CASES = {
    "scale": {"scale_p": 1.0, "hflip": 0, "vflip": 0, "rotate90": 0},
    "hflip": {"scale_p": 0.0, "hflip": 1, "vflip": 0, "rotate90": 0},
    "vflip": {"scale_p": 0.0, "hflip": 0, "vflip": 1, "rotate90": 0},
    "rotate90": {"scale_p": 0.0, "hflip": 0, "vflip": 0, "rotate90": 1},
    "everything": {"scale_p": 0.5},
}


@pytest.mark.parametrize("window_first", [True, False], ids=["window_first", "whole_image"])
@pytest.mark.parametrize("case", list(GEOMETRIC_CASES))
def test_label_follows_its_pixels_through_geometric_steps(case, window_first):
    transform = train_transform(crop_size=96, scale_range=(0.5, 2.0), window_first=window_first,
                                **GEOMETRIC_CASES[case], **NO_COLOUR)
    transform.reseed(7)
    checked = 0
    for seed in range(12):
        image, label = colour_scene(seed)
        out, mask = run(transform, image, label)
        assert out.shape == (96, 96, 3) and mask.shape == (96, 96)
        inside = interior(mask.astype(np.uint8))
        decoded = decode_label(out)
        # every interior pixel's colour names its label; padding is black with label 255
        expected = np.where(decoded == 254, 255, decoded)
        assert np.array_equal(expected[inside], mask[inside]), f"{case}: label moved off its pixels"
        checked += inside.sum()
    assert checked > 12 * 96 * 96 * 0.5


@pytest.mark.parametrize("window_first", [True, False], ids=["window_first", "whole_image"])
@pytest.mark.parametrize("position", ["center", "top_left"])
def test_padding_is_black_with_ignored_labels_centred_or_bottom_right(position, window_first):
    """A 300x260 scene scaled by 0.5 (150x130) is smaller than a 224 crop: the rest is padding, on
    all sides around the image as PadIfNeeded's default (the official code), or at the bottom/right."""
    transform = train_transform(crop_size=224, scale_range=(0.5, 0.5), scale_p=1.0, hflip=0, vflip=0, rotate90=0,
                                pad_position=position, window_first=window_first, **NO_COLOUR)
    image, label = colour_scene(1)
    out, mask = run(transform, image, label)
    top, left = ((224 - 150) // 2, (224 - 130) // 2) if position == "center" else (0, 0)
    inside = np.zeros((224, 224), bool)
    inside[top:top + 150, left:left + 130] = True
    assert (mask[~inside] == 255).all() and (out[~inside] <= 1).all()
    # the image (its background grey, never black) fills exactly its place
    assert (out[inside].max(-1) > 20).all()
    scaled = cv2.resize(label, (130, 150), interpolation=cv2.INTER_NEAREST_EXACT)
    assert (mask[inside].reshape(150, 130) == scaled).mean() > 0.97


@pytest.mark.parametrize("window_first", [True, False])
@pytest.mark.parametrize("color", [{"color": "oneof", "color_p": 1.0},
                                   {"color": "separate", "color_jitter": 1.0, "gamma": 1.0}], ids=["oneof", "separate"])
def test_colour_steps_leave_regions_uniform_and_labels_untouched(window_first, color):
    """Colour changes change colours, never positions: each label region stays one colour."""
    transform = train_transform(crop_size=96, scale_p=0.0, hflip=0, vflip=0, rotate90=0, window_first=window_first,
                                **color)
    transform.reseed(3)
    for seed in range(6):
        image, label = colour_scene(seed)
        out, mask = run(transform, image, label)
        inside = interior(mask.astype(np.uint8))
        for cls in np.unique(mask[inside]):
            region = out[inside & (mask == cls)].astype(np.int32)
            assert np.ptp(region, axis=0).max() <= 3, f"class {cls} region is not one colour"


@pytest.mark.parametrize("mask_interpolation,cv2_flag", [("nearest_exact", cv2.INTER_NEAREST_EXACT),
                                                         ("nearest", cv2.INTER_NEAREST)])
def test_window_first_equals_resizing_the_whole_image(mask_interpolation, cv2_flag):
    """For the same scale and crop, the window warp gives the whole-image resize's pixels (bilinear
    within 2 grey levels on a textured image) and its labels (centre-aligned nearest, or OpenCV's
    INTER_NEAREST as the official RandomScale; OpenCV's fixed-point arithmetic may round the other
    way where a sample falls exactly between pixels)."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (333, 410, 3), dtype=np.uint8), (5, 5), 1.5)
    label = rng.integers(0, 20, (333, 410), dtype=np.uint8)
    transform = RandomScaleCrop(128, (0.5, 2.0), 1.0, ops=[], mask_interpolation=mask_interpolation)
    transform.reseed(11)
    shift = 0.5 if mask_interpolation == "nearest_exact" else 0.0
    for _ in range(40):
        window, p = transform.plan(333, 410)
        top, bottom, left, right = window
        out = transform.finish(image[top:bottom, left:right], label[top:bottom, left:right], p)
        sh, sw = round(333 / p["fy"]), round(410 / p["fx"])
        ref_image = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_LINEAR)
        ref_label = cv2.resize(label, (sw, sh), interpolation=cv2_flag)
        ys, xs = slice(p["y0"], p["y0"] + p["rows"]), slice(p["x0"], p["x0"] + p["cols"])
        got_image, got_label = out["image"][:p["rows"], :p["cols"]], out["mask"].numpy()[:p["rows"], :p["cols"]]
        assert np.abs(got_image.astype(int) - ref_image[ys, xs].astype(int)).max() <= 2
        rows, cols = np.nonzero(got_label != ref_label[ys, xs])
        tie = [np.abs(pos - np.round(pos)) < 1e-6
               for pos in ((rows + p["y0"] + shift) * p["fy"], (cols + p["x0"] + shift) * p["fx"])]
        assert np.all(tie[0] | tie[1]), "labels differ away from pixel-boundary ties"


def ramp_image(size: int = 512) -> np.ndarray:
    """R = x / 4, G = y / 4: the source position of any output pixel can be read off it."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x // 4, y // 4, np.zeros_like(x)], -1).astype(np.uint8)


def measured_geometry(transform, image: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: the scale (output px per source px) and the source x and y of the crop's corner."""
    label = np.zeros(image.shape[:2], np.uint8)
    scales, corners = [], []
    for _ in range(samples):
        out, _ = run(transform, image, label)
        row = out[20, :60, 0].astype(float) * 4 + 1.5  # the middle of a 4-pixel step
        column = out[:60, 20, 1].astype(float) * 4 + 1.5
        scales.append(1 / np.polyfit(np.arange(row.size), row, 1)[0])
        corners.append([row[0], column[0]])
    return np.array(scales), np.array(corners)


def test_window_first_draws_the_scales_and_crops_of_the_whole_image_pipeline():
    size, crop = 512, 128
    image = ramp_image(size)
    geometry = {}
    for window_first in (True, False):
        transform = train_transform(crop_size=crop, scale_range=(0.5, 2.0), scale_p=0.5, hflip=0, vflip=0,
                                    rotate90=0, window_first=window_first, **NO_COLOUR)
        transform.reseed(5)
        geometry[window_first] = measured_geometry(transform, image, 160)
    for scales, corners in geometry.values():
        assert 0.45 < scales.min() and scales.max() < 2.2
        unscaled = np.abs(scales - 1) < 0.03
        assert 0.35 < unscaled.mean() < 0.65  # RandomScale's p = 0.5
        # the crop starts inside the scaled image: source x, y in [0, size - crop / s]
        last = size - crop / scales[:, None]
        assert (corners > -4).all() and (corners < last + 8).all()
        assert (corners.min(0) < 40).all() and ((corners + crop / scales[:, None]).max(0) > size - 40).all()
    (s_fast, c_fast), (s_ref, c_ref) = geometry[True], geometry[False]
    grid = np.linspace(0.5, 2.0, 61)
    ks = np.abs((s_fast[:, None] <= grid).mean(0) - (s_ref[:, None] <= grid).mean(0)).max()
    assert ks < 0.2, f"scale distributions differ (KS statistic {ks:.2f})"
    where_fast = c_fast / (size - crop / s_fast[:, None])
    where_ref = c_ref / (size - crop / s_ref[:, None])
    assert (np.abs(np.median(where_fast, 0) - np.median(where_ref, 0)) < 0.15).all()
    assert (np.abs(np.median(where_fast, 0) - 0.5) < 0.15).all()  # uniform positions: centred median


@pytest.mark.parametrize("window_first", [True, False])
def test_centre_crop_takes_the_middle_and_pads_small_images(window_first):
    transform = val_transform(crop_size=128, window_first=window_first)
    if window_first:
        assert transform.plan(300, 260)[0] == Window(86, 214, 66, 194)
    image, label = colour_scene(2, 300, 260)
    assert np.array_equal(run(transform, image, label)[1], label[86:214, 66:194])
    image, label = colour_scene(2, 100, 90)
    out, mask = run(transform, image, label)  # centred in the crop, 0 / 255 around it
    assert out.shape == (128, 128, 3) and np.array_equal(mask[14:114, 19:109], label)
    mask[14:114, 19:109] = 255
    assert (mask == 255).all()
    if window_first:
        bottom_right = CenterCrop(128, [ToTensorV2()], pad_position="top_left")
        out, mask = run(bottom_right, image, label)
        assert np.array_equal(mask[:100, :90], label) and (mask[100:] == 255).all() and (mask[:, 90:] == 255).all()


def test_resize_validation_shrinks_the_whole_image_and_its_label():
    """val_transform(resize=224): InternImage's "224-resize validation" (paper Table 9), the official
    A.Resize: the whole image bilinear, the label nearest (class ids stay class ids)."""
    image, label = colour_scene(3, 300, 260)
    out, mask = run(val_transform(crop_size=512, resize=224), image, label)
    assert out.shape == (224, 224, 3) and mask.shape == (224, 224)
    assert np.array_equal(mask, cv2.resize(label, (224, 224), interpolation=cv2.INTER_NEAREST))
    inside = interior(mask.astype(np.uint8))
    assert (decode_label(out)[inside] == np.where(mask == 255, 255, mask)[inside]).mean() > 0.99


def test_reseeded_transforms_repeat_and_differ():
    image, label = colour_scene(4)
    a, b = (train_transform(crop_size=96) for _ in range(2))
    a.reseed(1), b.reseed(1)
    assert np.array_equal(run(a, image, label)[1], run(b, image, label)[1])
    b.reseed(2)
    outs_a = [run(a, image, label)[1] for _ in range(4)]
    outs_b = [run(b, image, label)[1] for _ in range(4)]
    assert not all(np.array_equal(x, y) for x, y in zip(outs_a, outs_b))


def test_official_colour_step_draws_one_of_four_changes_with_probability_0_3():
    """The official OneOf: 30% of the samples change colour, by exactly one of contrast, gamma,
    brightness (weights 0.5 each) or the weak colour jitter (0.3), in the official ranges."""
    steps = A.Compose(color_ops("oneof", color_p=0.3), save_applied_params=True, seed=0)
    image = np.full((8, 8, 3), 128, np.uint8)
    counts = {"contrast": 0, "RandomGamma": 0, "brightness": 0, "ColorJitter": 0, "none": 0}
    draws = 3000
    for _ in range(draws):
        applied = steps(image=image)["applied_transforms"]
        assert len(applied) <= 1
        if not applied:
            counts["none"] += 1
            continue
        name, params = applied[0]
        if name == "RandomBrightnessContrast":
            if params["beta"] == 0:
                name = "contrast"
                assert 0.8 <= params["alpha"] <= 1.2
            else:
                name = "brightness"
                assert params["alpha"] == 1 and abs(params["beta"]) <= 0.2 * 255
        counts[name] += 1
    weights = {"contrast": 0.5, "RandomGamma": 0.5, "brightness": 0.5, "ColorJitter": 0.3}
    for name, weight in weights.items():
        expected = draws * 0.3 * weight / sum(weights.values())
        assert abs(counts[name] - expected) < 4 * expected ** 0.5, (name, counts)
    assert abs(counts["none"] - 0.7 * draws) < 4 * (draws * 0.21) ** 0.5


def test_colour_and_padding_settings_are_checked():
    with pytest.raises(ValueError, match="data.train_transform.color='jitter'; choose one of oneof, separate, none"):
        train_transform(color="jitter")
    with pytest.raises(ValueError, match="data.train_transform.pad_position='middle'"):
        train_transform(pad_position="middle")
    assert color_ops("none") == []


def test_reseeded_steps_draw_independently():
    """One seed, one stream for all steps: albumentations' own set_random_seed gives every step a
    generator with the same seed, so horizontal flips came exactly with vertical ones."""
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    transform = WholeImage([A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)])
    seen = set()
    for seed in range(40):
        transform.reseed(seed)
        out = transform.ops(image=image)["image"]
        seen.add((np.array_equal(out, image[:, ::-1]), np.array_equal(out, image[::-1])))
    assert seen == {(False, False), (True, False), (False, True)}  # (both flips: neither equality)


def test_a_sample_seed_fixes_the_augmentation_in_any_process():
    """The training sampler's keys (index, stream position) give a sample the same augmentation
    whichever worker loads it and whatever it loaded before."""
    image, label = colour_scene(6)

    class Reader:
        def open(self, name):
            return ArraySample(image, label)

    data = MultiSubsetDataset({"a": SegmentationDataset(["x", "y"], Reader(), train_transform(crop_size=64))}, seed=3)
    first = data[(1, 17)]
    for key in [(0, 5), (1, 2), 0, 1]:  # other draws in between
        data[key]
    again = data[(1, 17)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    assert not torch.equal(data[(1, 18)]["image"], first["image"])
