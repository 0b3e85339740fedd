"""The block cache of one subset: every listed image decoded and checked once, stored as a block file.

Built in `prepare_data` by a process pool; an image is re-encoded only when its image or label file
changed (size or mtime) or the codec settings changed, so a second run costs a stat per file. The
manifest records, per name, the source stamps and either the image size or the problem found
(missing file, undecodable file, sizes that disagree, label values that are not class ids or 255).
Labels are read by `read_labels` (default: single-channel class ids); a decoder of another coding
(samrs.data.labels) carries a `key` that is part of the cache directory's name and of every stamp,
so labels decoded another way are never mixed up.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterable, Iterator

import cv2
from rich.progress import track

from samrs.data.blocks import BlockCodec, BlockFile, write_block_file
from samrs.data.layout import SubsetLayout
from samrs.data.readers import BlockReader, ImageReader, LabelReader, load_pair
from samrs.sources.base import BadInputError, Problem
from samrs.utils.io import read_label, read_rgb, write_json
from samrs.utils.logging import get_logger
from samrs.utils.workers import WorkerInit

log = get_logger(__name__)

MANIFEST = "manifest.json"


@contextmanager
def opencv_threads(count: int) -> Iterator[None]:
    """OpenCV's thread count set to `count` inside the block, restored after it."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _stamp(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class SubsetCache:
    """Block files and manifest of the subset at `root`, under `directory`/<subset>-<hash>/."""

    directory: Path
    root: Path
    layout: SubsetLayout
    num_classes: int
    codec: BlockCodec
    read_labels: LabelReader = read_label
    read_image: ImageReader = read_rgb

    @classmethod
    def create(cls, cache_dir: str | Path, subset: str, root: str | Path, layout: SubsetLayout,
               num_classes: int, codec: BlockCodec, read_labels: LabelReader = read_label,
               read_image: ImageReader = read_rgb) -> SubsetCache:
        """One cache directory per (subset, resolved root, file folders, prefixes and suffixes, label
        coding, image bands): two roots never share blocks, and other split files reuse the same blocks."""
        root = Path(root).resolve()
        files = [layout.image_dir, layout.label_dir, layout.image_suffix, layout.label_suffix]
        prefixes = [layout.image_prefix, layout.label_prefix]
        subdirs = [layout.image_subdir, layout.label_subdir]
        # (only when set: keeps the directories of caches built before)
        extra = [prefixes] if any(prefixes) else []
        extra += [["subdirs", *subdirs]] if any(subdirs) else []
        labels = getattr(read_labels, "key", None)
        extra += [labels] if labels is not None else []
        bands = getattr(read_image, "key", None)
        extra += [bands] if bands is not None else []
        key = hashlib.sha1(json.dumps([str(root), *files, *extra]).encode())
        return cls(Path(cache_dir) / f"{subset}-{key.hexdigest()[:10]}", root, layout, num_classes, codec,
                   read_labels, read_image)

    @property
    def reader(self) -> BlockReader:
        return BlockReader(self.directory / "blocks")

    def stamps(self, name: str) -> dict[str, Any]:
        stamp = {"image": _stamp(self.layout.image_path(self.root, name)),
                 "label": _stamp(self.layout.label_path(self.root, name)),
                 "codec": asdict(self.codec)}
        labels = getattr(self.read_labels, "key", None)
        bands = getattr(self.read_image, "key", None)
        return {**stamp, **({} if labels is None else {"labels": labels}), **({} if bands is None else {"bands": bands})}

    def manifest(self) -> dict[str, dict[str, Any]]:
        """name -> {"stamp", "shape"} or {"stamp", "problem"}; empty before the first build."""
        path = self.directory / MANIFEST
        return json.loads(path.read_text())["entries"] if path.is_file() else {}

    def build(self, names: Iterable[str], workers: int = 0, progress: bool = True) -> dict[str, dict[str, Any]]:
        """Bring the cache up to date for `names`; returns (and writes) the manifest."""
        names = list(dict.fromkeys(names))
        known = self.manifest()
        entries, todo = {}, []
        for name in names:
            stamp = self.stamps(name)
            if name in known and known[name]["stamp"] == stamp:
                entries[name] = known[name]
            else:
                todo.append(name)
        if todo:
            log.info("caching %d of %d images of %s into %s", len(todo), len(names), self.root, self.directory)
            job = self.cache_one
            if workers > 1:
                # one OpenCV thread per worker, set here before the fork: cv2.setNumThreads in a forked
                # child waits forever on the parent's OpenCV threads once the parent has used them
                with opencv_threads(1), get_context().Pool(workers, initializer=WorkerInit()) as pool:
                    results = list(track(pool.imap_unordered(job, todo, chunksize=4), total=len(todo),
                                         description=f"caching {self.root.name}", disable=not progress))
            else:
                results = [job(n) for n in track(todo, description=f"caching {self.root.name}", disable=not progress)]
            entries.update(results)
        if todo or set(known) != set(entries):
            write_json(self.directory / MANIFEST, {"root": str(self.root), "entries": entries}, indent=None)
        return entries

    def cache_one(self, name: str) -> tuple[str, dict[str, Any]]:
        """Check one pair and write its block file (or keep a current one); runs in a pool worker."""
        stamp = self.stamps(name)
        target = self.reader.directory / f"{name}.blk"
        try:
            current = BlockFile(target)
            if current.source == stamp:
                return name, {"stamp": stamp, "shape": [current.height, current.width]}
        except (OSError, ValueError, KeyError):
            pass  # absent, stale or damaged: rebuild it
        try:
            image, label = load_pair(self.root, self.layout, name, self.num_classes, self.read_labels,
                                     self.read_image)
        except BadInputError as err:
            target.unlink(missing_ok=True)
            return name, {"stamp": stamp, "problem": err.problem.to_dict()}
        write_block_file(target, image, label, self.codec, stamp)
        return name, {"stamp": stamp, "shape": list(label.shape)}


def problems_of(entries: dict[str, dict[str, Any]], names: Iterable[str]) -> dict[str, Problem]:
    """name -> the problem the cache build found with it, for the names that have one."""
    return {n: Problem(**entries[n]["problem"]) for n in names if "problem" in entries[n]}
