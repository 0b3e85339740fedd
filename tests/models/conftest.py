"""Backbone tests of the model zoo; puts official_helpers (the shared fill rule) and, for the
experiment runs, tests/ (test_train_sep's compose_train and run) on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).parents[1]))
