"""Reads the images and annotations of a COCO instances file one entry at a time.

A SAMRS subset's instances.json holds one RLE per instance: gigabytes for a 100k-image subset, and
several times that once `json.load` has turned it into Python objects. ijson's C parser yields the
entries of one array at a time instead, so memory stays at one entry whatever the file size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import ijson

from samrs.errors import BadFileError


def iter_annotations(path: str | Path) -> Iterator[dict[str, Any]]:
    """Each entry of the top-level "annotations" array, in file order."""
    yield from _items(Path(path), "annotations.item")


def iter_images(path: str | Path) -> Iterator[dict[str, Any]]:
    """Each entry of the top-level "images" array, in file order.

    Stops reading at the end of that array: COCO writers (ours included) put "images" first, so the
    annotations after it are never parsed. Where they come first this still works, more slowly.
    """
    path = Path(path)
    builder: ijson.ObjectBuilder | None = None
    with open(path, "rb") as f:
        try:
            for prefix, event, value in ijson.parse(f, use_float=True):
                if builder is None:
                    if prefix == "images.item" and event == "start_map":
                        builder = ijson.ObjectBuilder()
                        builder.event(event, value)
                    elif prefix == "images" and event == "end_array":
                        return
                    continue
                if prefix == "images.item" and event == "end_map":
                    yield builder.value
                    builder = None
                else:
                    builder.event(event, value)
        except ijson.JSONError as e:
            raise BadFileError(f"{path}: not valid JSON ({e})") from None


def _items(path: Path, prefix: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        try:
            yield from ijson.items(f, prefix, use_float=True)
        except ijson.JSONError as e:
            raise BadFileError(f"{path}: not valid JSON ({e})") from None
