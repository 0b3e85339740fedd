"""iSAID ground truth: instance masks with classes, on the DOTA v1.0 images of the same name.

Per image `<name>.png` two RGB masks of the same size:
- `<name>_instance_id_RGB.png`: one colour per instance, black (0, 0, 0) background;
- `<name>_instance_color_RGB.png`: the instance's class in iSAID's palette (classes.ISAID_COLORS).
The iSAID devkit keeps all three in `<split>/images/`; the release ships the masks in
`Instance_masks/images/` and `Semantic_masks/images/` (set instance_dir / semantic_dir).

Each instance becomes an object whose `corners` are the minimum-area rectangle around its pixels
and whose `hbox` is the mask's extent, so iSAID can feed the same labelers as DOTA; `instance_masks`
returns the masks themselves for measuring label quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from samrs.classes import ISAID_COLORS, SubsetClasses
from samrs.geometry import clip_polygon, mask_hbox, mask_min_area_rect
from samrs.sources.base import Problem, Report, Source, SourceItem
from samrs.sources.common import Split, checked_size, list_files, pair_files, require_dir, split_dirs, unique_items
from samrs.sources.records import ImageRecord, MaskCrop, ObjectRecord
from samrs.utils.io import image_size, read_rgb

COLOR_NAMES = {color: name for name, color in ISAID_COLORS.items()}


@dataclass
class Instance(MaskCrop):
    """One instance of an id mask: its mask cropped to its box at (x0, y0), its colour, and the
    class colour most of its pixels have in the semantic mask."""

    color: tuple[int, int, int]
    class_color: tuple[int, int, int]


def rgb_codes(image: np.ndarray) -> np.ndarray:
    """(H, W) uint32 0xRRGGBB of an (H, W, 3) uint8 image: one integer per colour."""
    # Bytes B, G, R, 0 read as one little-endian uint32: ~5x faster than shifting three planes.
    padded = np.zeros((*image.shape[:2], 4), dtype=np.uint8)
    padded[..., :3] = image[..., ::-1]
    return padded.view("<u4")[..., 0]


def code_color(code: int) -> tuple[int, int, int]:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def color_code(color: Sequence[int]) -> int:
    """The inverse of code_color: 0xRRGGBB of an RGB colour, as rgb_codes gives it."""
    r, g, b = (int(v) for v in color)
    return r << 16 | g << 8 | b


def decode_instances(id_rgb: np.ndarray, class_rgb: np.ndarray) -> list[Instance]:
    """The instances of an id mask (every non-black colour), in order of colour code.

    One pass over the image: colours become labels 1..K and ndimage.find_objects gives each
    label's box, so thousands of small vehicles cost no more than one full-image scan each.
    """
    id_codes = rgb_codes(id_rgb)
    objects = id_codes != 0
    # Sorting only the object pixels (a few percent of a scene) is ~20x faster than all of them.
    codes, inverse = np.unique(id_codes[objects], return_inverse=True)
    labels = np.zeros(id_codes.shape, dtype=np.int32)
    labels[objects] = inverse.ravel() + 1
    class_codes = rgb_codes(class_rgb)
    instances = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):  # box of label k; 0 is background
        mask = labels[box] == k
        values, counts = np.unique(class_codes[box][mask], return_counts=True)
        instances.append(Instance(mask, box[1].start, box[0].start, code_color(codes[k - 1]),
                                  code_color(values[np.argmax(counts)])))
    return instances


class IsaidSource(Source):
    name = "isaid"

    def __init__(
        self,
        root: str | Path,
        classes: SubsetClasses,
        split: Split = "val",
        images_dir: str = "images",
        instance_dir: str = "images",
        semantic_dir: str = "images",
        image_suffix: str = ".png",
        instance_suffix: str = "_instance_id_RGB.png",
        semantic_suffix: str = "_instance_color_RGB.png",
    ) -> None:
        super().__init__(root, classes)
        self.split = split
        self.images_dir, self.instance_dir, self.semantic_dir = images_dir, instance_dir, semantic_dir
        self.image_suffix, self.instance_suffix, self.semantic_suffix = image_suffix, instance_suffix, semantic_suffix

    def items(self, report: Report) -> list[SourceItem]:
        items = []
        for split, folder in split_dirs(self.root, self.split):
            images_dir = require_dir(folder / self.images_dir, "iSAID images")
            instance_dir = require_dir(folder / self.instance_dir, "iSAID instance masks")
            images = {name: path for name, path in list_files(images_dir, [self.image_suffix]).items()
                      if not self._is_mask(path)}
            for item in pair_files(images, list_files(instance_dir, [self.instance_suffix]),
                                   images_dir, instance_dir, report, split=split):
                if self._semantic_path(item).is_file():
                    items.append(item)
                else:
                    report(Problem(str(item.annotation_path), None, "missing_annotation",
                                   f"no class mask {self._semantic_path(item)} beside the instance mask"))
        return unique_items(items)

    def read(self, item: SourceItem, report: Report) -> ImageRecord | None:
        """The record, without decoding the image: sizes are checked from the headers."""
        semantic = self._semantic_path(item)
        try:
            mask_sizes = {image_size(item.annotation_path), image_size(semantic)}
        except OSError as err:
            report(Problem(str(item.annotation_path), None, "unreadable_image", str(err)))
            return None
        size = checked_size(item.image_path, None, item.annotation_path, None, report)
        if size is None:
            return None
        if mask_sizes != {size}:
            sizes = " and ".join(f"{w}x{h}" for w, h in sorted(mask_sizes))
            report(Problem(str(item.annotation_path), None, "size_mismatch",
                           f"masks are {sizes}, image {item.image_path.name} is {size[0]}x{size[1]}"))
            return None
        objects = []
        for inst in decode_instances(read_rgb(item.annotation_path), read_rgb(semantic)):
            obj = self._object(inst, size, semantic, report)
            if obj is not None:
                objects.append(obj)
        return ImageRecord(item.name, item.image_path, size[0], size[1], objects, source=self.name,
                           annotation_path=item.annotation_path, extras={"semantic_mask": str(semantic)})

    def instance_masks(self, record: ImageRecord) -> list[np.ndarray]:
        """One (H, W) bool mask per object of `record`, in the record's object order. A full-size
        mask per instance adds up (289 vehicles of a 5 Mpx scene: 1.5 GB); `instance_crops` keeps
        each to its box."""
        return [inst.full(record.height, record.width) for inst in self.instance_crops(record)]

    def instance_crops(self, record: ImageRecord) -> list[Instance]:
        """One Instance (mask cropped to its box, with the box's offset) per object of `record`."""
        instances = {inst.color: inst for inst in decode_instances(
            read_rgb(record.annotation_path), read_rgb(record.extras["semantic_mask"]))}
        return [instances[tuple(obj.extras["instance_color"])] for obj in record.objects]

    def _object(self, inst: Instance, size: tuple[int, int], semantic: Path, report: Report) -> ObjectRecord | None:
        """The instance as an object; its box is derived, not given, so a rectangle that leaves the
        image beside a mask touching the border is clipped without a problem."""
        name = COLOR_NAMES.get(inst.class_color)
        class_id = None if name is None else self.classes.id_of(name)
        if class_id is None:
            report(Problem(str(semantic), None, "unknown_class", f"instance {inst.color} has class colour "
                           f"{inst.class_color}: {name or 'not an iSAID class'}, not in subset {self.classes.name}"))
            return None
        corners = mask_min_area_rect(inst.mask) + (inst.x0, inst.y0)
        hbox = mask_hbox(inst.mask) + (inst.x0, inst.y0, inst.x0, inst.y0)
        inside = corners.min() >= 0 and np.all(corners.max(axis=0) <= size)
        polygon = None if inside else clip_polygon(corners, 0, 0, *size)
        return ObjectRecord(name, class_id, corners, hbox, polygon=polygon, extras={"instance_color": inst.color})

    def _semantic_path(self, item: SourceItem) -> Path:
        return item.annotation_path.parents[len(Path(self.instance_dir).parts)] / self.semantic_dir / (
            item.name + self.semantic_suffix)

    def _is_mask(self, path: Path) -> bool:
        low = path.name.lower()
        return low.endswith(self.instance_suffix.lower()) or low.endswith(self.semantic_suffix.lower())
