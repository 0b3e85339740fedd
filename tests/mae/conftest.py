"""MAE pre-training tests; puts tests/ on sys.path for test_train_sep's compose_train."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
