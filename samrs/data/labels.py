"""How a dataset's label files encode its classes, and decoding them to class ids (255 = ignored).

Two codings cover the fine-tuning sets and samrs' own subsets:

- `ids`: single-channel values. `values[v]` names the class of value v (null: no class, ignored);
  without `values`, a value is the class id itself (samrs' own labels). mmseg's Potsdam converter
  writes 0 for boundaries and unknown colours, then 1-6 for the six ISPRS classes.
- `color`: RGB colour codes (ISPRS Potsdam's label TIFFs, iSAID's `*_instance_color_RGB.png`).
  `colors` maps class names to colours; `ignore_colors` are pixels without a class (Potsdam's
  black eroded borders).

A name that the class list leaves out is ignored on purpose (Potsdam's clutter in the 5-class
setting, iSAID's background when the 15-class list is used). A value or colour the coding does not
know is an error naming the file, or, with `unknown: ignore`, ignored like the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from samrs.classes import IGNORE_INDEX, SubsetClasses
from samrs.errors import ConfigError
from samrs.sources.isaid import code_color, color_code, rgb_codes
from samrs.utils.io import read_label, read_rgb

FORMATS = ("ids", "color")
UNKNOWN = ("raise", "ignore")


@dataclass(frozen=True)
class LabelCoding:
    """The coding of a dataset's label files (see the module docstring)."""

    format: str = "ids"
    values: Sequence[str | None] | None = None
    colors: Mapping[str, Sequence[int]] = field(default_factory=dict)
    ignore_colors: Sequence[Sequence[int]] = ()
    unknown: str = "raise"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"labels.format={self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.unknown not in UNKNOWN:
            raise ConfigError(f"labels.unknown={self.unknown!r}; choose one of {', '.join(UNKNOWN)}")
        if self.format == "color" and not self.colors:
            raise ConfigError("labels.format=color needs labels.colors (class name -> [r, g, b])")

    def describe(self) -> dict[str, Any]:
        """Plain settings, for cache stamps: a changed coding re-decodes the labels."""
        return {"format": self.format, "values": None if self.values is None else list(self.values),
                "colors": {k: list(v) for k, v in self.colors.items()},
                "ignore_colors": [list(c) for c in self.ignore_colors], "unknown": self.unknown}

    def decoder(self, classes: SubsetClasses) -> LabelDecoder:
        """The decoder to `classes`' ids; every class of the list must be coded."""
        coded = set(self.colors) if self.format == "color" else (
            {n for n in self.values if n is not None} if self.values is not None else None)
        if coded is not None:
            missing = [n for n in classes.names if n not in coded]
            if missing:
                where = "labels.colors" if self.format == "color" else "labels.values"
                raise ConfigError(f"{where} codes no {', '.join(missing)} of class list {classes.name} "
                                  f"({', '.join(classes.names)}); check the spelling")
        key = {"coding": self.describe(), "classes": list(classes.names)}
        if self.format == "color":
            table = {color_code(color): classes.id_of(name) for name, color in self.colors.items()}
            table.update({color_code(c): None for c in self.ignore_colors})
            return ColorDecoder(table, self.unknown, key)
        if self.values is None:
            lut = np.arange(256, dtype=np.int16)
            lut[classes.num_classes:] = -1
            lut[IGNORE_INDEX] = IGNORE_INDEX
        else:
            lut = np.full(256, -1, np.int16)
            for value, name in enumerate(self.values):
                cid = None if name is None else classes.id_of(name)
                lut[value] = IGNORE_INDEX if cid is None else cid
        return IdDecoder(lut, self.unknown, key)


class UnknownLabelError(ValueError):
    """A label file holds values or colours that its coding does not know."""


class LabelDecoder(ABC):
    """path -> (H, W) uint8 class ids with 255 ignored; UnknownLabelError naming the file for unknown
    codes. `key`: the coding and class list, which the block cache stamps its labels with."""

    unknown: str
    key: dict[str, Any]

    @abstractmethod
    def __call__(self, path: Path) -> np.ndarray: ...

    def _unknown(self, path: Path, what: str) -> None:
        if self.unknown == "raise":
            raise UnknownLabelError(f"{path}: {what} are no class of the label coding (set data.labels.unknown=ignore "
                             f"to ignore such pixels)")


class IdDecoder(LabelDecoder):
    """Single-channel values through a 256-entry lookup table (-1 = unknown value)."""

    def __init__(self, lut: np.ndarray, unknown: str, key: dict[str, Any]) -> None:
        self.lut, self.unknown, self.key = lut, unknown, key

    def __call__(self, path: Path) -> np.ndarray:
        raw = read_label(path)
        out = self.lut[raw]
        bad = out < 0
        if bad.any():
            self._unknown(path, f"values {', '.join(map(str, np.unique(raw[bad])[:8]))}")
            out[bad] = IGNORE_INDEX
        return out.astype(np.uint8)


class ColorDecoder(LabelDecoder):
    """RGB colours through a sorted table of colour codes (a binary search per pixel)."""

    def __init__(self, table: Mapping[int, int | None], unknown: str, key: dict[str, Any]) -> None:
        self.codes = np.array(sorted(table), dtype=np.uint32)
        self.ids = np.array([IGNORE_INDEX if table[c] is None else table[c] for c in self.codes.tolist()], np.uint8)
        self.unknown, self.key = unknown, key

    def __call__(self, path: Path) -> np.ndarray:
        codes = rgb_codes(read_rgb(path))
        where = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        out = self.ids[where]
        bad = self.codes[where] != codes
        if bad.any():
            shown = ", ".join(str(code_color(c)) for c in np.unique(codes[bad])[:4])
            self._unknown(path, f"{int(bad.sum())} pixels of colours {shown}")
            out[bad] = IGNORE_INDEX
        return out
