"""File helpers: atomic writes (nothing is ever half-written) and image reading to 8-bit RGB."""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# mkstemp creates files readable by their owner only; written files get the usual mode instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The rename is atomic on POSIX, so a reader (or a resumed run) sees either the old file or the
    complete new one, never a partial write, even after kill -9.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_partial_files(directory: str | os.PathLike) -> int:
    """Delete the temporary files of `atomic_path` writes that a kill -9 cut short, anywhere under
    `directory`; returns how many there were. Run it only while nothing writes there."""
    removed = 0
    for path in Path(directory).rglob(".*.tmp*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Strict JSON: NaN and infinities (a class absent from labels and predictions) become null, which
    every parser reads; Python's default writes bare NaN, which JavaScript, jq --strict and others refuse."""
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False)
    except ValueError:  # rare: only then pay for a walk over the whole object
        text = json.dumps(_finite(obj), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(value) for value in obj]
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(path: str | os.PathLike, array: np.ndarray, compress_level: int = 1,
              palette: Sequence[Sequence[int]] | None = None) -> None:
    """Write an (H, W) uint8 or (H, W, 3) RGB uint8 array as PNG, atomically. With `palette` (RGB
    colours of values 0, 1, ...), an (H, W) array is written as a palette PNG: the values stay class
    ids for programs, viewers show the colours.

    compress_level 1 is ~5x faster to write than PIL's default 6 for a few percent more bytes.
    """
    array = np.ascontiguousarray(array)
    if palette is None:
        image = Image.fromarray(array)
    else:  # (convert("P") would re-quantise the values)
        image = Image.frombytes("P", (array.shape[1], array.shape[0]), array.astype(np.uint8).tobytes())
        colors = [int(v) for color in palette for v in color]
        image.putpalette(colors + [0] * (768 - len(colors)))  # all 256 entries: PIL sizes the PNG's bit depth by them
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=compress_level)


def to_uint8_rgb(array: np.ndarray) -> np.ndarray:
    """Gray, gray+alpha, RGBA and 16-bit (or float) images as (H, W, 3) uint8 RGB.

    16-bit and float data are rescaled by their own range (2nd-98th percentile would change
    well-exposed 8-bit-in-16 files; the full range keeps them exact up to a factor).
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] <= 2:  # gray, gray + alpha
        a = a[:, :, 0]
    elif a.ndim == 3 and a.shape[2] > 3:  # RGBA (alpha dropped), or extra bands
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        if hi <= 255 and lo >= 0 and np.all(a == np.round(a)):
            a = a.astype(np.uint8)
        else:
            a = np.clip((a - lo) / max(hi - lo, 1e-12) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"cannot convert an image of shape {array.shape} to RGB")
    return np.ascontiguousarray(a)


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """PIL's Image.open without its decompression-bomb limit (179 Mpx): DOTA v2.0 and FAIR1M scenes
    are legitimately larger (up to ~800 Mpx)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    with im:
        yield im


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) read from the image header alone, without decoding the pixels.

    Raises OSError naming the file when the header cannot be read.
    """
    path = Path(path)
    try:
        with _open_image(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as err:
        raise OSError(f"{path}: cannot read the image header ({err})") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read png/jpg/tif/bmp as (H, W, 3) uint8 RGB; gray, palette, RGBA and 16-bit are converted.

    Raises OSError naming the file when it cannot be decoded, or not whole (truncated, corrupt).
    """
    path = Path(path)
    try:
        with _open_image(path) as im:
            im.load()  # every pixel: a truncated or corrupt file fails here
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("RGB", "L", "RGBA", "LA", "I;16", "I;16B", "I", "F"):
                return to_uint8_rgb(np.asarray(im))
    except UnidentifiedImageError:
        pass  # PIL does not read every TIFF (e.g. multi-channel float or signed 16-bit): OpenCV below does.
    except (OSError, ValueError, SyntaxError) as err:
        # Never OpenCV then: it returns what a truncated JPEG gives up to the cut (grey below it).
        raise OSError(f"{path}: cannot decode the image ({err})") from None
    # Whole files PIL decoded in a mode not taken above (CMYK JPEG, 1-bit), and files PIL cannot identify.
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise OSError(f"{path}: cannot read image (missing, truncated or not an image)")
    if data.ndim == 3 and data.shape[2] >= 3:
        data = data[:, :, [2, 1, 0] + list(range(3, data.shape[2]))]  # BGR(A) -> RGB(A)
    return to_uint8_rgb(data)


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel label PNG as (H, W) uint8."""
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"{path}: label image has mode {im.mode}, expected single-channel L or P")
        return np.asarray(im, dtype=np.uint8)
