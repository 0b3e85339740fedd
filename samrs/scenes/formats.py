"""Generated scenes written exactly as the real detection datasets lay them out.

Each writer puts one scene in its dataset's folders, file names, encodings, header lines and XML
element order (see docs/formats.md), so the readers in samrs.sources are tested on files shaped like
the real ones while the exact masks stay known. `write_format` writes a whole generated dataset:

- dota:     DOTA/<split>/images/P0000.png + labelTxt/P0000.txt (header lines, CRLF), plus the iSAID
            masks of the same images in iSAID/<split>/images/ (the 15 iSAID classes only, as in iSAID)
- dior:     JPEGImages-trainval|test/00001.jpg, Annotations/Horizontal Bounding Boxes/ (VOC, CRLF),
            Annotations/Oriented Bounding Boxes/ (DIOR-R), ImageSets/Main/{train,val,test}.txt
- fair1m:   <split>/images/0.tif + labelXml/0.xml (5-point closed rings, names with spaces)
- hrsc2016: FullDataSet/AllImages/100000001.bmp, Annotations/*.xml (mbox in radians),
            Segmentations/*.png (one colour per ship, test split only), ImageSets/*.txt

Rotated boxes are written with the precision the real files use (0.1 px in DOTA, whole pixels in
DIOR-R, ...); before rounding they are grown by one rounding step on every side, so the written box
still covers the object's mask. Horizontal boxes are the masks' exact pixel-edge extents.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from samrs.classes import ISAID_COLORS
from samrs.scenes.generate import Scene, generate_scenes
from samrs.utils.io import atomic_path, write_png, write_text

FORMATS = ("dota", "dior", "fair1m", "hrsc2016", "samrs")
# The SAMRS subset whose class names each format's scenes use.
FORMAT_SUBSET = {"dota": "sota", "dior": "sior", "fair1m": "fast", "hrsc2016": "hrsc2016"}
# File names as the datasets number their images.
FORMAT_NAMES: dict[str, Callable[[int], str]] = {
    "dota": lambda i: f"P{i:04d}",
    "dior": lambda i: f"{i + 1:05d}",
    "fair1m": lambda i: str(i),
    "hrsc2016": lambda i: str(100000001 + i),
}


def format_scenes(fmt: str, count: int, size: int | Sequence[int] = 512, seed: int = 0,
                  num_objects: int | Sequence[int] = (4, 10)) -> Iterator[Scene]:
    """`count` generated scenes with the format's class names and file names."""
    scenes = generate_scenes(FORMAT_SUBSET[fmt], count, seed=seed, size=size, num_objects=num_objects)
    for i, scene in enumerate(scenes):
        yield dataclasses.replace(scene, name=FORMAT_NAMES[fmt](i))


def save_image(path: Path, image: np.ndarray, **options) -> None:
    """Write an RGB image atomically in the format its suffix names (PIL's writer)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=Image.registered_extensions()[path.suffix.lower()], **options)


def grown(corners: np.ndarray, step: float) -> np.ndarray:
    """The rectangle `corners` grown by `step` on every side, so rounding every coordinate to a
    multiple of `step` cannot pull an edge inside the object (a corner moves at most step/sqrt 2)."""
    corners = np.asarray(corners, dtype=np.float64)
    centre = corners.mean(axis=0)
    out = corners.copy()
    for edge in (corners[1] - corners[0], corners[3] - corners[0]):
        unit = edge / max(np.linalg.norm(edge), 1e-12)
        out += step * np.sign((corners - centre) @ unit)[:, None] * unit
    return out


def instance_colors(n: int) -> list[tuple[int, int, int]]:
    """n distinct non-black colours (47 is odd, so k*47 mod 256 differs for k = 1..255)."""
    if n > 255:
        raise ValueError(f"{n} objects: at most 255 distinct instance colours")
    return [((k * 47) % 256, (k * 101) % 256, (k * 151) % 256) for k in range(1, n + 1)]


# --- DOTA and iSAID -----------------------------------------------------------------------------


def write_dota_scene(scene: Scene, split_dir: Path, gsd: float = 0.15) -> None:
    """images/<name>.png and labelTxt/<name>.txt (imagesource and gsd header lines, CRLF)."""
    write_png(split_dir / "images" / f"{scene.name}.png", scene.image)
    lines = ["imagesource:generated", f"gsd:{gsd}"]
    for obj in scene.objects:
        coords = " ".join(f"{v:.1f}" for v in np.round(grown(obj.corners, 0.1), 1).ravel())
        lines.append(f"{coords} {obj.class_name} 0")
    write_text(split_dir / "labelTxt" / f"{scene.name}.txt", "\r\n".join(lines) + "\r\n")


def write_isaid_scene(scene: Scene, split_dir: Path) -> None:
    """images/<name>.png with <name>_instance_id_RGB.png (one colour per instance) and
    <name>_instance_color_RGB.png (iSAID's class colours); classes iSAID lacks stay background."""
    folder = split_dir / "images"
    ids = np.zeros((*scene.image.shape[:2], 3), np.uint8)
    colors = np.zeros_like(ids)
    kept = [obj for obj in scene.objects if obj.class_name in ISAID_COLORS]
    for obj, color in zip(kept, instance_colors(len(kept))):
        ids[obj.mask] = color
        colors[obj.mask] = ISAID_COLORS[obj.class_name]
    write_png(folder / f"{scene.name}.png", scene.image)
    write_png(folder / f"{scene.name}_instance_id_RGB.png", ids)
    write_png(folder / f"{scene.name}_instance_color_RGB.png", colors)


def _write_dota(scenes: Iterable[Scene], out: Path, split: str = "train") -> None:
    for scene in scenes:
        write_dota_scene(scene, out / "DOTA" / split)
        write_isaid_scene(scene, out / "iSAID" / split)


# --- whole datasets -----------------------------------------------------------------------------

WRITERS: dict[str, Callable[[Iterable[Scene], Path], None]] = {
    "dota": _write_dota,
}


def write_format(
    fmt: str,
    out: str | Path,
    count: int,
    size: int | Sequence[int] = 512,
    seed: int = 0,
    num_objects: int | Sequence[int] = (4, 10),
    wrap: Callable[[Iterable[Scene]], Iterable[Scene]] = lambda scenes: scenes,
) -> Path:
    """Write `count` generated scenes in format `fmt` under `out`; `wrap` may add a progress bar."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(WRITERS)}")
    out = Path(out)
    WRITERS[fmt](wrap(format_scenes(fmt, count, size, seed, num_objects)), out)
    return out
