"""Fixtures of the label-job tests; puts labeljob_helpers on sys.path."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labeljob_helpers import DOTA_SCENES  # noqa: E402

from samrs.scenes.formats import write_format  # noqa: E402
from samrs.utils.io import write_text  # noqa: E402


@pytest.fixture(scope="session")
def dota_root(tmp_path_factory) -> Path:
    """A generated DOTA dataset (DOTA/train/images, labelTxt), plus P9999: a scene without objects."""
    root = write_format("dota", tmp_path_factory.mktemp("dota"), **DOTA_SCENES) / "DOTA"
    shutil.copy(root / "train" / "images" / "P0000.png", root / "train" / "images" / "P9999.png")
    write_text(root / "train" / "labelTxt" / "P9999.txt", "imagesource:GoogleEarth\ngsd:0.3\n")
    return root
