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
- coco:     images/000000000000.png + annotations.json (bbox, polygon segmentation = the rotated box)
- yolo_obb: images/train/img_00000.png + labels/train/img_00000.txt (normalised corners), data.yaml
- geotiff:  georeferenced 16-bit multispectral scenes with boxes in EPSG:4326 (samrs.scenes.geotiff)

Rotated boxes are written with the precision the real files use (0.1 px in DOTA, whole pixels in
DIOR-R, ...); before rounding they are grown by one rounding step on every side, so the written box
still covers the object's mask. Horizontal boxes are the masks' exact pixel-edge extents.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from samrs.classes import ISAID_COLORS, subset_classes
from samrs.errors import ConfigError
from samrs.scenes.folder import NEW_OUT, claim_folder, mark_complete
from samrs.scenes.generate import Scene, generate_scenes
from samrs.sources.dior import ROBNDBOX, dior_name
from samrs.sources.fair1m import fair1m_name
from samrs.sources.hrsc2016 import HBOX
from samrs.utils.io import atomic_path, write_png, write_text

FORMATS = ("dota", "dior", "fair1m", "hrsc2016", "coco", "yolo_obb", "geotiff", "samrs")
# The SAMRS subset whose class names each format's scenes use.
FORMAT_SUBSET = {"dota": "sota", "dior": "sior", "fair1m": "fast", "hrsc2016": "hrsc2016", "coco": "sota",
                 "yolo_obb": "sota"}
# File names as the datasets number their images.
FORMAT_NAMES: dict[str, Callable[[int], str]] = {
    "dota": lambda i: f"P{i:04d}",
    "dior": lambda i: f"{i + 1:05d}",
    "fair1m": lambda i: str(i),
    "hrsc2016": lambda i: str(100000001 + i),
    "coco": lambda i: f"{i:012d}",
    "yolo_obb": lambda i: f"img_{i:05d}",
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


def isaid_masks(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """iSAID's two RGB masks of a scene: one colour per instance, and the class colours (black
    background; classes iSAID lacks stay background)."""
    ids = np.zeros((*scene.image.shape[:2], 3), np.uint8)
    colors = np.zeros_like(ids)
    kept = [obj for obj in scene.objects if obj.class_name in ISAID_COLORS]
    for obj, color in zip(kept, instance_colors(len(kept))):
        ids[obj.mask] = color
        colors[obj.mask] = ISAID_COLORS[obj.class_name]
    return ids, colors


def write_isaid_scene(scene: Scene, split_dir: Path) -> None:
    """images/<name>.png with <name>_instance_id_RGB.png (one colour per instance) and
    <name>_instance_color_RGB.png (iSAID's class colours), as the devkit lays them out."""
    folder = split_dir / "images"
    ids, colors = isaid_masks(scene)
    write_png(folder / f"{scene.name}.png", scene.image)
    write_png(folder / f"{scene.name}_instance_id_RGB.png", ids)
    write_png(folder / f"{scene.name}_instance_color_RGB.png", colors)


def _write_dota(scenes: Iterable[Scene], out: Path, split: str = "train") -> None:
    for scene in scenes:
        write_dota_scene(scene, out / "DOTA" / split)
        write_isaid_scene(scene, out / "iSAID" / split)


# --- DIOR and DIOR-R ----------------------------------------------------------------------------

DIOR_SPLITS = ("train", "val", "test", "test")  # scene i goes to DIOR_SPLITS[i % 4], as DIOR's 1:1:2


def dior_corners(corners: np.ndarray) -> np.ndarray:
    """Corners in DIOR-R's order: left-top, right-top, right-bottom, left-bottom (clockwise on
    screen, starting at the corner up and left of the centre)."""
    offsets = corners - corners.mean(axis=0)
    return corners[np.argsort(np.arctan2(offsets[:, 1], offsets[:, 0]))]


def write_dior_scene(scene: Scene, root: Path, split: str) -> None:
    """The image (jpg), its VOC-style horizontal XML (tabs, CRLF, no declaration, as DIOR) and its
    DIOR-R oriented XML (4 spaces, LF, declaration; objects in another order, as in DIOR-R)."""
    folder = "JPEGImages-test" if split == "test" else "JPEGImages-trainval"
    save_image(root / folder / f"{scene.name}.jpg", scene.image, quality=95)
    h, w = scene.image.shape[:2]
    horizontal = ["<annotation>", f"\t<filename>{scene.name}.jpg</filename>", "\t<source>",
                  "\t\t<database>DIOR</database>", "\t</source>", "\t<size>", f"\t\t<width>{w}</width>",
                  f"\t\t<height>{h}</height>", "\t\t<depth>3</depth>", "\t</size>", "\t<segmented>0</segmented>"]
    for obj in scene.objects:
        horizontal += ["\t<object>", f"\t\t<name>{dior_name(obj.class_name)}</name>", "\t\t<pose>Unspecified</pose>",
                       "\t\t<bndbox>"]
        horizontal += [f"\t\t\t<{k}>{int(v)}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), obj.hbox)]
        horizontal += ["\t\t</bndbox>", "\t</object>"]
    horizontal.append("</annotation>")
    text = "\n".join(horizontal).replace("\n", "\r\n") + "\r\n"
    write_text(root / "Annotations/Horizontal Bounding Boxes" / f"{scene.name}.xml", text)
    zipped = f"/{folder}.zip/{folder}/{folder}"
    oriented = ['<?xml version="1.0" encoding="UTF-8"?>', "<annotation>", f"    <folder>{zipped}</folder>",
                f"    <filename>{scene.name}.jpg</filename>", f"    <path>{zipped}</path>", "    <source>",
                "        <database>Unknown</database>", "    </source>", "    <size>", f"        <width>{w}</width>",
                f"        <height>{h}</height>", "        <depth>3</depth>", "    </size>", "    <segmented>0</segmented>"]
    for obj in reversed(scene.objects):
        corners = dior_corners(np.round(grown(obj.corners, 1.0)))
        angle = np.degrees(np.arctan2(*(corners[1] - corners[0])[::-1]))
        oriented += ["    <object>", "        <type>robndbox</type>", f"        <name>{dior_name(obj.class_name)}</name>",
                     "        <pose>Unspecified</pose>", "        <truncated>0</truncated>",
                     "        <difficult>0</difficult>", "        <robndbox>"]
        oriented += [f"            <{k}>{int(v)}</{k}>" for k, v in zip(ROBNDBOX, corners.ravel())]
        oriented += ["        </robndbox>", f"        <angle>{angle:.1f}</angle>", "    </object>"]
    oriented.append("</annotation>")
    write_text(root / "Annotations/Oriented Bounding Boxes" / f"{scene.name}.xml", "\n".join(oriented) + "\n")


def _write_dior(scenes: Iterable[Scene], out: Path) -> None:
    splits: dict[str, list[str]] = {s: [] for s in DIOR_SPLITS}
    for i, scene in enumerate(scenes):
        split = DIOR_SPLITS[i % len(DIOR_SPLITS)]
        write_dior_scene(scene, out, split)
        splits[split].append(scene.name)
    for split, names in splits.items():
        write_text(out / "ImageSets/Main" / f"{split}.txt", "".join(f"{n}\n" for n in names))


# --- FAIR1M -------------------------------------------------------------------------------------


def write_fair1m_scene(scene: Scene, split_dir: Path) -> None:
    """images/<name>.tif and labelXml/<name>.xml (utf-8 declaration, tabs, 5-point closed rings,
    class names with spaces, no newline after the last tag, as FAIR1M)."""
    save_image(split_dir / "images" / f"{scene.name}.tif", scene.image)
    h, w = scene.image.shape[:2]
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotation>", "\t<source>",
             f"\t\t<filename>{scene.name}.tif</filename>", "\t\t<origin>GF2/GF3</origin>", "\t</source>",
             "\t<research>", "\t\t<version>1.0</version>", "\t\t<provider>FAIR1M</provider>",
             "\t\t<author>samrs</author>", "\t\t<pluginname>FAIR1M</pluginname>",
             "\t\t<pluginclass>object detection</pluginclass>", "\t\t<time>2021-07-21</time>", "\t</research>",
             "\t<size>", f"\t\t<width>{w}</width>", f"\t\t<height>{h}</height>", "\t\t<depth>3</depth>",
             "\t</size>", "\t<objects>"]
    for obj in scene.objects:
        ring = grown(obj.corners, 1e-6)
        lines += ["\t\t<object>", "\t\t\t<coordinate>pixel</coordinate>", "\t\t\t<type>rectangle</type>",
                  "\t\t\t<description>None</description>", "\t\t\t<possibleresult>",
                  f"\t\t\t\t<name>{fair1m_name(obj.class_name)}</name>", "\t\t\t</possibleresult>", "\t\t\t<points>"]
        lines += [f"\t\t\t\t<point>{x:.6f},{y:.6f}</point>" for x, y in [*ring, ring[0]]]
        lines += ["\t\t\t</points>", "\t\t</object>"]
    lines += ["\t</objects>", "</annotation>"]
    write_text(split_dir / "labelXml" / f"{scene.name}.xml", "\n".join(lines))


def _write_fair1m(scenes: Iterable[Scene], out: Path, split: str = "train") -> None:
    for scene in scenes:
        write_fair1m_scene(scene, out / split)


# --- HRSC2016 -----------------------------------------------------------------------------------

HRSC_SPLITS = DIOR_SPLITS  # scene i goes to HRSC_SPLITS[i % 4]; only test images are segmented


def hrsc_mbox(corners: np.ndarray) -> tuple[float, float, float, float, float]:
    """(cx, cy, w, h, angle in radians) of a rectangle: w along its long side, angle in
    (-pi/2, pi/2], the inverse of samrs.geometry.rotated_rect."""
    c = np.asarray(corners, dtype=np.float64)
    if np.linalg.norm(c[1] - c[0]) < np.linalg.norm(c[2] - c[1]):
        c = np.roll(c, -1, axis=0)
    (dx, dy), h = c[1] - c[0], float(np.linalg.norm(c[2] - c[1]))
    angle = float(np.arctan2(dy, dx))
    angle = angle - np.pi if angle > np.pi / 2 else angle + np.pi if angle <= -np.pi / 2 else angle
    cx, cy = c.mean(axis=0)
    return float(cx), float(cy), float(np.hypot(dx, dy)), h, angle


def empty(tag: str, pad: str) -> list[str]:
    """An empty HRSC field as HRSC2016 writes one: opening and closing tag on two lines."""
    return [f"{pad}<{tag}>", f"{pad}</{tag}>"]


def write_hrsc_scene(scene: Scene, data_dir: Path, segmented: bool, first_object_id: int) -> None:
    """AllImages/<id>.bmp, Annotations/<id>.xml (HRSC's element order, 2-space indent) and, when
    `segmented`, Segmentations/<id>.png: each ship in its seg_color on black."""
    save_image(data_dir / "AllImages" / f"{scene.name}.bmp", scene.image)
    h, w = scene.image.shape[:2]
    colors = instance_colors(len(scene.objects))
    lines = ["<HRSC_Image>", f"  <Img_ID>{scene.name}</Img_ID>", "  <Place_ID>100000001</Place_ID>",
             "  <Source_ID>100000001</Source_ID>", f"  <Img_NO>{scene.name}</Img_NO>",
             f"  <Img_FileName>{scene.name}</Img_FileName>", "  <Img_FileFmt>bmp</Img_FileFmt>",
             "  <Img_Date>1900-01-01</Img_Date>", "  <Img_CusType>sealand</Img_CusType>", *empty("Img_Des", "  "),
             "  <Img_Location>0,0</Img_Location>", f"  <Img_SizeWidth>{w}</Img_SizeWidth>",
             f"  <Img_SizeHeight>{h}</Img_SizeHeight>", "  <Img_SizeDepth>3</Img_SizeDepth>",
             "  <Img_Resolution>1.07</Img_Resolution>", "  <Img_Resolution_Layer>18</Img_Resolution_Layer>",
             "  <Img_Scale>100</Img_Scale>", *empty("Img_SclPxlNum", "  "), f"  <segmented>{int(segmented)}</segmented>",
             "  <Img_Havemask>0</Img_Havemask>", *empty("Img_MaskFileName", "  "), *empty("Img_MaskFileFmt", "  "),
             *empty("Img_MaskType", "  ")]
    lines += ([f"  <Img_SegFileName>{scene.name}</Img_SegFileName>", "  <Img_SegFileFmt>png</Img_SegFileFmt>"]
              if segmented else [*empty("Img_SegFileName", "  "), *empty("Img_SegFileFmt", "  ")])
    lines += ["  <Img_Rotation>000d</Img_Rotation>", "  <Annotated>1</Annotated>", "  <HRSC_Objects>"]
    pad = "      "
    for k, (obj, color) in enumerate(zip(scene.objects, colors)):
        cx, cy, bw, bh, angle = hrsc_mbox(grown(obj.corners, 0.01))
        bow = np.array([cx, cy]) + bw / 2 * np.array([np.cos(obj.angle), np.sin(obj.angle)])
        lines += ["    <HRSC_Object>", f"{pad}<Object_ID>{first_object_id + k}</Object_ID>",
                  f"{pad}<Class_ID>100000001</Class_ID>", f"{pad}<Object_NO>{first_object_id + k}</Object_NO>",
                  f"{pad}<truncated>0</truncated>", f"{pad}<difficult>0</difficult>"]
        lines += [f"{pad}<{key}>{int(v)}</{key}>" for key, v in zip(HBOX, obj.hbox)]
        lines += [f"{pad}<mbox_cx>{cx:.4f}</mbox_cx>", f"{pad}<mbox_cy>{cy:.4f}</mbox_cy>",
                  f"{pad}<mbox_w>{bw:.4f}</mbox_w>", f"{pad}<mbox_h>{bh:.4f}</mbox_h>",
                  f"{pad}<mbox_ang>{angle:.6f}</mbox_ang>", f"{pad}<segmented>{int(segmented)}</segmented>"]
        lines += [f"{pad}<seg_color>{','.join(map(str, color))}</seg_color>"] if segmented else empty("seg_color", pad)
        lines += [f"{pad}<header_x>{int(round(bow[0]))}</header_x>", f"{pad}<header_y>{int(round(bow[1]))}</header_y>",
                  "    </HRSC_Object>"]
    lines += ["  </HRSC_Objects>", "</HRSC_Image>"]
    write_text(data_dir / "Annotations" / f"{scene.name}.xml", "\n".join(lines) + "\n")
    if segmented:
        segmentation = np.zeros((h, w, 3), np.uint8)
        for obj, color in zip(scene.objects, colors):
            segmentation[obj.mask] = color
        write_png(data_dir / "Segmentations" / f"{scene.name}.png", segmentation)


def _write_hrsc2016(scenes: Iterable[Scene], out: Path) -> None:
    splits: dict[str, list[str]] = {s: [] for s in HRSC_SPLITS}
    object_id = 100000001
    for i, scene in enumerate(scenes):
        split = HRSC_SPLITS[i % len(HRSC_SPLITS)]
        write_hrsc_scene(scene, out / "FullDataSet", split == "test", object_id)
        object_id += len(scene.objects)
        splits[split].append(scene.name)
    splits["trainval"] = sorted(splits["train"] + splits["val"])
    for split, names in splits.items():
        write_text(out / "ImageSets" / f"{split}.txt", "".join(f"{n}\n" for n in names))


# --- COCO and Ultralytics OBB -------------------------------------------------------------------


def _write_coco(scenes: Iterable[Scene], out: Path) -> None:
    """images/<name>.png and annotations.json: categories numbered from 1 as in COCO, per object its
    mask's box as bbox and its rotated box (grown by 0.01 px, 2 decimals) as polygon segmentation."""
    names = subset_classes(FORMAT_SUBSET["coco"]).names
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        write_png(out / "images" / f"{scene.name}.png", scene.image)
        h, w = scene.image.shape[:2]
        images.append({"id": image_id, "file_name": f"{scene.name}.png", "width": w, "height": h})
        for obj in scene.objects:
            x0, y0, x1, y1 = (float(v) for v in obj.hbox)
            ring = np.round(grown(obj.corners, 0.01), 2).ravel().tolist()
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": obj.class_id + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [ring], "area": obj.area,
                                "iscrowd": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "object"} for k, n in enumerate(names)]
    write_text(out / "annotations.json", json.dumps({"images": images, "annotations": annotations,
                                                    "categories": categories}))


def _write_yolo_obb(scenes: Iterable[Scene], out: Path, split: str = "train") -> None:
    """images/<split>/<name>.png, labels/<split>/<name>.txt ("class x1 y1 ... x4 y4", corners divided
    by the image's width and height, 6 decimals) and data.yaml with the names."""
    names = subset_classes(FORMAT_SUBSET["yolo_obb"]).names
    for scene in scenes:
        write_png(out / "images" / split / f"{scene.name}.png", scene.image)
        h, w = scene.image.shape[:2]
        lines = [f"{obj.class_id} " + " ".join(f"{v:.6f}" for v in (grown(obj.corners, 0.01) / [w, h]).ravel())
                 for obj in scene.objects]
        write_text(out / "labels" / split / f"{scene.name}.txt", "".join(f"{line}\n" for line in lines))
    yaml_names = "".join(f"  {k}: {n}\n" for k, n in enumerate(names))
    write_text(out / "data.yaml", f"path: {out}\ntrain: images/{split}\nval: images/{split}\nnames:\n{yaml_names}")


# --- whole datasets -----------------------------------------------------------------------------

WRITERS: dict[str, Callable[[Iterable[Scene], Path], None]] = {
    "dota": _write_dota,
    "dior": _write_dior,
    "fair1m": _write_fair1m,
    "hrsc2016": _write_hrsc2016,
    "coco": _write_coco,
    "yolo_obb": _write_yolo_obb,
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
    """Write `count` generated scenes in format `fmt` under `out` (a new or empty folder, or one
    written with the same settings: samrs.scenes.folder); `wrap` may add a progress bar."""
    if fmt not in WRITERS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(WRITERS)}")
    out = Path(out)
    settings = {"format": fmt, "count": count, "size": size if isinstance(size, int) else list(size), "seed": seed,
                "num_objects": num_objects if isinstance(num_objects, int) else list(num_objects)}
    if not claim_folder(out, settings, NEW_OUT):
        WRITERS[fmt](wrap(format_scenes(fmt, count, size, seed, num_objects)), out)
        mark_complete(out, settings)
    return out
