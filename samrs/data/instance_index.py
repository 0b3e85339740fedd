"""Per-image access to a subset's COCO instances file without holding the file in memory.

A SAMRS subset's instances.json holds one RLE per instance: about a gigabyte for SOTA, several times
that once `json.load` has made Python objects of it, in every DataLoader worker. The index streams
the file once (ijson's C parser, one chunk at a time) and writes each image's annotations, as compact
JSON lines, into one contiguous range of a blob file; a JSON table maps image name -> (COCO id,
height, width, offset, length). A sample then costs one `pread` and a few small `json.loads`.

With a cache directory the two files live there (built once in `prepare_data`, rebuilt when the
instances file's size or mtime changes); without one the blob is kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import ijson
import numpy as np
from pycocotools import mask as mask_utils

from samrs.errors import BadFileError, MissingPathError
from samrs.classes import SubsetClasses
from samrs.data.layout import SubsetLayout
from samrs.labeling.rle import rle_to_mask
from samrs.utils.io import atomic_path, write_json

INDEX_VERSION = 1
INDEX_TABLE, INDEX_BLOB = "instances-index.json", "instances-index.bin"
_CHUNK = 1 << 20


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def image_name(file_name: str, layout: SubsetLayout) -> str:
    """The image name of a COCO `file_name` ('images/P0001.png', 'P0001.png' -> 'P0001')."""
    name = file_name.replace("\\", "/")
    name = name.removeprefix(f"{layout.image_dir}/")
    head, _, base = name.rpartition("/")
    base = base.removeprefix(layout.image_prefix)
    base = base.removesuffix(layout.image_suffix) if layout.image_suffix else base
    return f"{head}/{base}" if head else base


def _stream(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("images" | "annotations" | "categories", entry) for every entry of the three top-level
    arrays, in one read of the file (one ijson coroutine per array, fed the same chunks)."""
    sections = ("images", "annotations", "categories")
    found = {s: ijson.sendable_list() for s in sections}
    coros = {s: ijson.items_coro(found[s], f"{s}.item", use_float=True) for s in sections}
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                for s in sections:
                    coros[s].send(chunk)
                    yield from ((s, entry) for entry in found[s])
                    del found[s][:]
        for s in sections:
            coros[s].close()
            yield from ((s, entry) for entry in found[s])
    except ijson.JSONError as err:
        raise BadFileError(f"{path}: not valid JSON ({err})") from None


def _record(ann: dict[str, Any], path: Path) -> bytes:
    """One annotation as a compact JSON line: category id, bbox, segmentation, rotated box, crowd flag."""
    if "segmentation" not in ann or "bbox" not in ann:
        raise BadFileError(f"{path}: annotation {ann.get('id')} has no segmentation or bbox; the instance task "
                           f"needs both (samrs.label writes them)")
    rec = {"c": ann.get("category_id"), "b": ann["bbox"], "s": ann["segmentation"], "r": ann.get("rbox"),
           "z": int(ann.get("iscrowd", 0))}
    return (json.dumps(rec, separators=(",", ":")) + "\n").encode()


def _class_map(categories: list[dict[str, Any]], used: set[Any], classes: SubsetClasses, path: Path) -> dict[int, int]:
    """COCO category id -> class id of the subset, by category name; every used id must be listed."""
    out = {}
    for cat in categories:
        cls = classes.id_of(str(cat.get("name", "")))
        if cls is None:
            raise BadFileError(f"{path}: category {cat.get('name')!r} (id {cat.get('id')}) is not a class of "
                               f"{classes.name} ({', '.join(classes.names[:4])}, ...); point the subset at the right "
                               f"instances file or set its classes")
        out[int(cat["id"])] = cls
    unknown = sorted(str(c) for c in used if c not in out)
    if unknown:
        raise BadFileError(f"{path}: annotations use category ids {', '.join(unknown[:5])}, which the categories "
                           f"list does not name")
    return out


class InstanceIndex:
    """Annotations of one subset's instances file, image by image.

    `images`: name -> [COCO image id, height, width, offset, length] of its range in `blob` (a
    file path, or the bytes themselves). `class_of`: the file's category id -> class id.
    """

    def __init__(self, images: dict[str, list[int]], blob: Path | bytes, class_of: dict[int, int]) -> None:
        self.images, self.blob, self.class_of = images, blob, class_of
        self.category_of = {v: k for k, v in class_of.items()}  # class id -> category id (results files)

    def __contains__(self, name: str) -> bool:
        return name in self.images

    def __len__(self) -> int:
        return len(self.images)

    def image(self, name: str) -> tuple[int, int, int]:
        """(COCO image id, height, width)."""
        image_id, height, width, _, _ = self.images[name]
        return image_id, height, width

    def annotations(self, name: str) -> list[dict[str, Any]]:
        """The image's annotations: {"c": class id, "b": [x, y, w, h], "s": segmentation, "r": rotated
        box or None, "z": iscrowd}."""
        _, _, _, offset, length = self.images[name]
        if not length:
            return []
        if isinstance(self.blob, bytes):
            data = self.blob[offset:offset + length]
        else:
            fd = os.open(self.blob, os.O_RDONLY)
            try:
                data = os.pread(fd, length, offset)
            finally:
                os.close(fd)
        out = [json.loads(line) for line in data.splitlines()]
        for ann in out:
            ann["c"] = self.class_of[ann["c"]]
        return out

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, classes: SubsetClasses, layout: SubsetLayout,
             directory: str | os.PathLike | None = None) -> InstanceIndex:
        """The index of instances file `path`: read from `directory` when it is current there, else
        built (into `directory`, or in memory without one)."""
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"{path}: instances file not found; the instance task reads the COCO instances "
                                   f"file that samrs.label writes (data.instances names it, relative to each root)")
        if directory is not None:
            table = Path(directory) / INDEX_TABLE
            if table.is_file():
                meta = json.loads(table.read_text())
                if meta.get("version") == INDEX_VERSION and meta.get("stamp") == _stamp(path) \
                        and meta.get("classes") == list(classes.names):
                    return cls(meta["images"], Path(directory) / INDEX_BLOB,
                               {int(k): v for k, v in meta["class_of"].items()})
        return cls.build(path, classes, layout, directory)

    @classmethod
    def build(cls, path: Path, classes: SubsetClasses, layout: SubsetLayout,
              directory: str | os.PathLike | None = None) -> InstanceIndex:
        """Stream `path` once; annotation lines are spooled to disk as they come (never all in memory),
        then grouped by image."""
        stamp = _stamp(path)
        images: dict[int, tuple[str, int, int]] = {}
        categories: list[dict[str, Any]] = []
        ids, lengths, used = [], [], set()
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory) as spool:
            for section, entry in _stream(path):
                if section == "images":
                    images[int(entry["id"])] = (image_name(entry["file_name"], layout), int(entry["height"]),
                                                int(entry["width"]))
                elif section == "categories":
                    categories.append(entry)
                else:
                    rec = _record(entry, path)
                    ids.append(int(entry["image_id"]))
                    lengths.append(len(rec))
                    used.add(entry.get("category_id"))
                    spool.write(rec)
            class_of = _class_map(categories, used, classes, path)
            unknown = sorted(set(ids) - set(images))
            if unknown:
                raise BadFileError(f"{path}: annotations refer to image ids that the images list lacks "
                                   f"({', '.join(map(str, unknown[:5]))})")
            if directory is None:
                blob, ranges = _grouped(spool, np.asarray(ids, np.int64), np.asarray(lengths, np.int64), None)
            else:
                with atomic_path(Path(directory) / INDEX_BLOB) as tmp:
                    blob, ranges = _grouped(spool, np.asarray(ids, np.int64), np.asarray(lengths, np.int64), tmp)
                blob = Path(directory) / INDEX_BLOB
        table = {name: [image_id, h, w, *ranges.get(image_id, (0, 0))] for image_id, (name, h, w) in images.items()}
        if directory is not None:
            write_json(Path(directory) / INDEX_TABLE, {"version": INDEX_VERSION, "source": str(path), "stamp": stamp,
                                                       "classes": list(classes.names), "class_of": class_of,
                                                       "images": table}, indent=None)
        return cls(table, blob, class_of)


def _grouped(spool, ids: np.ndarray, lengths: np.ndarray, target: Path | None):
    """The spooled lines reordered so that each image's annotations are one contiguous range (a
    stable sort by image id), written to `target` or returned as bytes; with image id -> (offset,
    length). samrs writes annotations image by image, so the reorder is usually a plain copy."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    order = np.argsort(ids, kind="stable")
    sorted_ids, sorted_lengths = ids[order], lengths[order]
    starts = np.concatenate([[0], np.cumsum(sorted_lengths)])
    first = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    last = np.r_[first[1:], len(sorted_ids)].astype(np.int64)
    ranges = {int(sorted_ids[a]): (int(starts[a]), int(starts[b] - starts[a])) for a, b in zip(first, last)}
    parts: list[bytes] = []
    with open(target, "wb") if target is not None else contextlib.nullcontext() as out:
        sink = out.write if out is not None else parts.append
        spool.flush()
        # runs of spool records that stay consecutive in the new order: read in large pieces
        breaks = np.flatnonzero(np.diff(order) != 1) + 1
        for run in np.split(order, breaks) if len(order) else []:
            start, end = int(offsets[run[0]]), int(offsets[run[-1]] + lengths[run[-1]])
            for pos in range(start, end, _CHUNK * 64):
                sink(os.pread(spool.fileno(), min(_CHUNK * 64, end - pos), pos))
    return (b"".join(parts) if target is None else target), ranges


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO segmentation: RLE (compressed or not) or polygons."""
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation)
    rles = mask_utils.frPyObjects(segmentation, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
