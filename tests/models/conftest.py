"""Backbone tests of the model zoo; puts official_helpers (the shared fill rule) on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
