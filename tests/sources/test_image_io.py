"""Images as the readers and the label job open them: png/jpg/tif/bmp in gray, palette, RGBA and
16-bit all become 8-bit RGB; files PIL leaves to OpenCV too; truncated files are refused; sizes come
from headers alone, also for huge remote-sensing scenes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from samrs.utils.io import image_size, read_rgb

H, W = 12, 20
RNG = np.random.default_rng(0)
_Y, _X = np.mgrid[0:H, 0:W]
# Smooth ramps, so that lossy JPEG stays close; every other format must give them back exactly.
RGB = np.dstack([_X * 12, _Y * 20, (_X + _Y) * 8]).astype(np.uint8)
GRAY = (_X * 11 + _Y * 3).astype(np.uint8)
GRAY16 = np.linspace(0, 65535, H * W).astype(np.uint16).reshape(H, W)
RGB16 = (RGB.astype(np.uint16) * 257)  # full 16-bit range, 257 = 65535 / 255


def palette_image() -> tuple[Image.Image, np.ndarray]:
    index = RNG.integers(0, 4, (H, W), dtype=np.uint8)
    colors = np.array([[255, 0, 0], [0, 128, 0], [10, 20, 250], [77, 77, 77]], dtype=np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(colors.ravel().tolist())
    return image, colors[index]


def write(path, mode: str) -> np.ndarray:
    """Write a test image of `mode` to `path`; the 8-bit RGB that reading it must give."""
    if mode == "gray":
        Image.fromarray(GRAY).save(path)
        return np.repeat(GRAY[..., None], 3, axis=2)
    if mode == "palette":
        image, expected = palette_image()
        image.save(path)
        return expected
    if mode == "rgba":
        Image.fromarray(np.dstack([RGB, np.full((H, W), 90, np.uint8)])).save(path)
        return RGB
    if mode == "gray16":
        Image.fromarray(GRAY16).save(path)  # PIL's I;16
        return np.repeat(np.round(GRAY16 / 65535 * 255).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "rgb16":
        assert cv2.imwrite(str(path), RGB16[..., ::-1])  # OpenCV writes 16-bit colour png/tif
        return RGB
    raise ValueError(mode)


CASES = [  # the modes each format can store
    ("png", "gray"), ("png", "palette"), ("png", "rgba"), ("png", "gray16"), ("png", "rgb16"),
    ("jpg", "gray"),
    ("tif", "gray"), ("tif", "palette"), ("tif", "rgba"), ("tif", "gray16"), ("tif", "rgb16"),
    ("bmp", "gray"), ("bmp", "palette"), ("bmp", "rgba"),
]


@pytest.mark.parametrize("suffix, mode", CASES)
def test_read_rgb_converts_to_8bit_rgb(tmp_path, suffix, mode):
    path = tmp_path / f"image.{suffix}"
    expected = write(path, mode)
    image = read_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (H, W, 3)
    if suffix == "jpg":  # lossy
        assert np.abs(image.astype(int) - expected).mean() < 3
    else:
        assert np.abs(image.astype(int) - expected).max() <= 1
    assert image_size(path) == (W, H)


def test_rgb_jpg_and_8bit_values_in_16bit(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.jpg", quality=98)
    assert np.abs(read_rgb(tmp_path / "a.jpg").astype(int) - RGB).mean() < 3
    # 16-bit files holding 8-bit values (some GeoTIFF exports) keep their values.
    Image.fromarray(GRAY.astype(np.uint16)).save(tmp_path / "b.tif")
    np.testing.assert_array_equal(read_rgb(tmp_path / "b.tif")[..., 0], GRAY)


def test_unreadable_files_name_themselves(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(OSError, match="broken.png"):
        read_rgb(bad)
    with pytest.raises(OSError, match="broken.png: cannot read the image header"):
        image_size(bad)
    with pytest.raises(OSError, match="missing.png"):
        image_size(tmp_path / "missing.png")


def test_files_pil_leaves_to_opencv(tmp_path):
    """CMYK JPEG and 1-bit images (decoded by PIL, in modes it leaves), 3-band float TIFF (PIL cannot
    identify it)."""
    Image.fromarray(RGB).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    assert np.abs(read_rgb(tmp_path / "cmyk.jpg").astype(int) - RGB).mean() < 3
    Image.fromarray(GRAY > 100).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "bits.png")[..., 0], np.where(GRAY > 100, 255, 0))
    floats = RGB.astype(np.float32) / 255
    assert cv2.imwrite(str(tmp_path / "float.tif"), floats[..., ::-1])
    stretched = np.round(RGB / RGB.max() * 255)  # float data is rescaled by its own range
    assert np.abs(read_rgb(tmp_path / "float.tif") - stretched).max() <= 1


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"mode": "CMYK"}], ids=["baseline", "progressive", "cmyk"])
def test_truncated_jpegs_are_refused(tmp_path, options):
    """OpenCV decodes a cut JPEG up to the cut and fills the rest with grey: never accepted."""
    image = Image.fromarray(RNG.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    if options.pop("mode", None):
        image = image.convert("CMYK")
    path = tmp_path / "cut.jpg"
    image.save(path, quality=90, **options)
    data = path.read_bytes()
    assert read_rgb(path).shape == (64, 96, 3)
    for end in (len(data) // 2, len(data) * 9 // 10, len(data) - 2):  # ... the last without its end marker
        path.write_bytes(data[:end])
        with pytest.raises(OSError, match=r"cut.jpg: cannot decode the image \(image file is truncated"):
            read_rgb(path)


def test_huge_images_pass_the_decompression_bomb_guard(tmp_path, monkeypatch):
    """DOTA v2.0 scenes reach ~800 Mpx, over PIL's 179 Mpx refusal limit: lower the limit to see
    that headers and pixels are still read."""
    Image.fromarray(RGB).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "big.png")
    assert image_size(tmp_path / "big.png") == (W, H)
    np.testing.assert_array_equal(read_rgb(tmp_path / "big.png"), RGB)
    assert Image.MAX_IMAGE_PIXELS == 10  # the limit is restored for everyone else
