"""Fixtures of the georeferenced-data tests: generated GeoTIFF scenes and their labeled subset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from geo_helpers import SCENES, label_geo  # noqa: E402

from samrs.scenes.geotiff import write_geotiff_scenes  # noqa: E402


@pytest.fixture(scope="session")
def geo_scenes(tmp_path_factory) -> Path:
    return write_geotiff_scenes(tmp_path_factory.mktemp("geo_scenes"), **SCENES)


@pytest.fixture(scope="session")
def geo_labeled(geo_scenes, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("geo_labeled") / "subset"
    return out, label_geo(geo_scenes, out)
