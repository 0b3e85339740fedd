"""Fixtures of the reader tests: problem collectors, generated datasets in every real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samrs.geometry import rasterize_polygon
from samrs.scenes.formats import format_scenes, write_format
from samrs.sources.base import Problem

# Small and quick, but with several objects per scene and every split the writers know.
GENERATED = dict(count=8, size=160, seed=5, num_objects=(4, 8))


class Problems(list):
    """A report callback that keeps every Problem, with lookups for assertions."""

    def __call__(self, problem: Problem) -> None:
        self.append(problem)

    def kinds(self) -> list[str]:
        return [p.kind for p in self]

    def of(self, kind: str) -> list[Problem]:
        return [p for p in self if p.kind == kind]

    def where(self) -> set[tuple[str, str, int | None]]:
        """(kind, file name, line) of every problem."""
        return {(p.kind, Path(p.path).name, p.line) for p in self}


@pytest.fixture
def problems() -> Problems:
    return Problems()


class Generated(dict):
    """Generated datasets by format, each written on first use: format -> root folder."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __missing__(self, fmt: str) -> Path:
        self[fmt] = write_format(fmt, self.root / fmt, **GENERATED)
        return self[fmt]


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Generated:
    """Generated datasets in every detection format (each written once per session)."""
    return Generated(tmp_path_factory.mktemp("formats"))


@pytest.fixture(scope="session")
def scenes() -> dict[str, dict]:
    """The generated scenes behind `generated`: format -> name -> Scene."""
    return {fmt: {s.name: s for s in format_scenes(fmt, **GENERATED)} for fmt in ("dota", "dior", "fair1m", "hrsc2016")}


@pytest.fixture(scope="session")
def covers():
    """covers(polygon, mask): whether the polygon, rasterised as the labelers paint it, contains
    every pixel of the mask."""

    def check(polygon: np.ndarray, mask: np.ndarray) -> bool:
        return bool(np.all(rasterize_polygon(polygon, *mask.shape)[mask]))

    return check
