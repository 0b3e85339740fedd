"""Class lists, name normalisation and palettes of every dataset samrs reads or writes.

Ids of the SAMRS subsets follow the official SAMRS release (DESIGN.md); the detection datasets keep
their own names, and `SubsetClasses.id_of` maps a source name onto a subset id.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass, field
from functools import cached_property

from samrs.errors import ConfigError

IGNORE_INDEX = 255

SOTA = (
    "large-vehicle", "swimming-pool", "helicopter", "bridge", "plane", "ship", "soccer-ball-field",
    "basketball-court", "ground-track-field", "small-vehicle", "baseball-diamond", "tennis-court",
    "roundabout", "storage-tank", "harbor", "container-crane", "airport", "helipad",
)
SIOR = (
    "airplane", "airport", "baseballfield", "basketballcourt", "bridge", "chimney",
    "expressway-service-area", "expressway-toll-station", "dam", "golffield", "groundtrackfield",
    "harbor", "overpass", "ship", "stadium", "storagetank", "tenniscourt", "trainstation", "vehicle",
    "windmill",
)
FAST = (
    "A220", "A321", "A330", "A350", "ARJ21", "Baseball-Field", "Basketball-Court", "Boeing737",
    "Boeing747", "Boeing777", "Boeing787", "Bridge", "Bus", "C919", "Cargo-Truck", "Dry-Cargo-Ship",
    "Dump-Truck", "Engineering-Ship", "Excavator", "Fishing-Boat", "Football-Field", "Intersection",
    "Liquid-Cargo-Ship", "Motorboat", "other-airplane", "other-ship", "other-vehicle",
    "Passenger-Ship", "Roundabout", "Small-Car", "Tennis-Court", "Tractor", "Trailer",
    "Truck-Tractor", "Tugboat", "Van", "Warship",
)
HRSC = ("ship",)

# DOTA class lists by version: v1.5 adds container-crane, v2.0 adds airport and helipad.
DOTA_V1_0 = (
    "plane", "baseball-diamond", "bridge", "ground-track-field", "small-vehicle", "large-vehicle",
    "ship", "tennis-court", "basketball-court", "storage-tank", "soccer-ball-field", "roundabout",
    "harbor", "swimming-pool", "helicopter",
)
DOTA_V1_5 = DOTA_V1_0 + ("container-crane",)
DOTA_V2_0 = DOTA_V1_5 + ("airport", "helipad")
DOTA_CLASSES = {"1.0": DOTA_V1_0, "1.5": DOTA_V1_5, "2.0": DOTA_V2_0}

# iSAID: the 15 DOTA v1.0 classes with iSAID's colour coding of *_instance_color_RGB.png.
ISAID_COLORS = {
    "ship": (0, 0, 63), "storage-tank": (0, 63, 63), "baseball-diamond": (0, 63, 0),
    "tennis-court": (0, 63, 127), "basketball-court": (0, 63, 191),
    "ground-track-field": (0, 63, 255), "bridge": (0, 127, 63), "large-vehicle": (0, 127, 127),
    "small-vehicle": (0, 0, 127), "helicopter": (0, 0, 191), "swimming-pool": (0, 0, 255),
    "roundabout": (0, 191, 127), "soccer-ball-field": (0, 127, 191), "plane": (0, 127, 255),
    "harbor": (0, 100, 155),
}
# Fine-tuning iSAID: the 15 foreground classes in iSAID's usual order (mmseg's iSAIDDataset).
ISAID = (
    "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "swimming-pool", "roundabout", "soccer-ball-field", "plane", "harbor",
)
# ... with the background (black in the colour masks) as class 0, trained and left out of the means
# (the official SAMRS fine-tuning code; mmseg's iSAIDDataset has the same 16 classes).
ISAID_WITH_BACKGROUND = ("background", *ISAID)
BACKGROUND_COLOR = (0, 0, 0)
# ISPRS Potsdam: the 5 classes of the paper's fine-tuning (clutter ignored in training and testing),
# in mmseg's order; POTSDAM_WITH_CLUTTER is mmseg's 6-class setting.
POTSDAM = ("impervious-surface", "building", "low-vegetation", "tree", "car")
POTSDAM_WITH_CLUTTER = (*POTSDAM, "clutter")
# The ISPRS colour coding of the label TIFFs; the noBoundary labels also paint eroded borders black.
POTSDAM_COLORS = {
    "impervious-surface": (255, 255, 255), "building": (0, 0, 255), "low-vegetation": (0, 255, 255),
    "tree": (0, 255, 0), "car": (255, 255, 0), "clutter": (255, 0, 0),
}
# Label values as mmseg's converter (tools/dataset_converters/potsdam.py) writes them: 0 for black
# (boundary) and any colour it does not know, then the six colours; None: no class (ignored).
MMSEG_POTSDAM_VALUES = (None, "impervious-surface", "building", "low-vegetation", "tree", "car", "clutter")
# ISPRS Vaihingen: the same six ISPRS classes and colours (IRRG images); the fine-tuning ignores
# clutter as for Potsdam (the official code trains 5 classes on both). mmseg's Vaihingen converter
# writes the same values as its Potsdam converter.
VAIHINGEN = POTSDAM
VAIHINGEN_WITH_CLUTTER = POTSDAM_WITH_CLUTTER
# LoveDA: mask values 1-7 are these classes (mmseg's LoveDADataset names), 0 is no-data (ignored);
# background is a real land-cover class here, counted in the mIoU. Colours: mmseg's palette.
LOVEDA = ("background", "building", "road", "water", "barren", "forest", "agricultural")
LOVEDA_COLORS = {
    "background": (255, 255, 255), "building": (255, 0, 0), "road": (255, 255, 0), "water": (0, 0, 255),
    "barren": (159, 129, 183), "forest": (0, 255, 0), "agricultural": (255, 195, 128),
}


def normalize_name(name: str) -> str:
    """Spelling-insensitive key: case, spaces, '-' and '_' do not matter ("Liquid Cargo Ship")."""
    return re.sub(r"[\s_\-]+", "", name.strip().lower())


def make_palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated RGB colours, the same for the same n (golden-ratio hue steps)."""
    colors = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 + 0.35 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 3) % 2)
        r, g, b = colorsys.hsv_to_rgb(h, s, v)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return colors


@dataclass(frozen=True)
class SubsetClasses:
    """The class list of one subset: names in id order, a palette, and name lookup."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = field(default=())
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.palette:
            object.__setattr__(self, "palette", tuple(make_palette(len(self.names))))
        if len(self.palette) != len(self.names):
            raise ValueError(f"{self.name}: {len(self.palette)} colours for {len(self.names)} classes")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def id_of(self, source_name: str) -> int | None:
        """Subset id of a class name as a source file spells it; None when unknown."""
        key = normalize_name(self.aliases.get(normalize_name(source_name), source_name))
        return self._lookup.get(key)

    @cached_property
    def _lookup(self) -> dict[str, int]:
        return {normalize_name(n): i for i, n in enumerate(self.names)}


SUBSETS: dict[str, SubsetClasses] = {
    "sota": SubsetClasses("sota", SOTA),
    "sior": SubsetClasses("sior", SIOR),
    "fast": SubsetClasses("fast", FAST),
    "hrsc2016": SubsetClasses("hrsc2016", HRSC),
    "isaid": SubsetClasses("isaid", ISAID, tuple(ISAID_COLORS[n] for n in ISAID)),
    "isaid_with_background": SubsetClasses("isaid_with_background", ISAID_WITH_BACKGROUND,
                                           (BACKGROUND_COLOR, *(ISAID_COLORS[n] for n in ISAID))),
    "potsdam": SubsetClasses("potsdam", POTSDAM, tuple(POTSDAM_COLORS[n] for n in POTSDAM)),
    "potsdam_with_clutter": SubsetClasses("potsdam_with_clutter", POTSDAM_WITH_CLUTTER,
                                          tuple(POTSDAM_COLORS[n] for n in POTSDAM_WITH_CLUTTER)),
    "vaihingen": SubsetClasses("vaihingen", VAIHINGEN, tuple(POTSDAM_COLORS[n] for n in VAIHINGEN)),
    "vaihingen_with_clutter": SubsetClasses("vaihingen_with_clutter", VAIHINGEN_WITH_CLUTTER,
                                            tuple(POTSDAM_COLORS[n] for n in VAIHINGEN_WITH_CLUTTER)),
    "loveda": SubsetClasses("loveda", LOVEDA, tuple(LOVEDA_COLORS[n] for n in LOVEDA)),
}


class UnknownSubsetError(ConfigError, KeyError):
    """A class list asked for by a name samrs does not know."""

    __str__ = Exception.__str__  # the message, not KeyError's quoted repr of it


def subset_classes(name: str) -> SubsetClasses:
    """The class list of a subset by name (sota, sior, fast, hrsc2016, isaid, isaid_with_background,
    potsdam, potsdam_with_clutter, vaihingen, vaihingen_with_clutter, loveda)."""
    try:
        return SUBSETS[name.lower()]
    except KeyError:
        raise UnknownSubsetError(f"unknown subset {name!r}; known: {', '.join(SUBSETS)}") from None
