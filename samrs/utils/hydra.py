"""Where the Hydra configs are, and the entry-point decorator every job uses."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import hydra


def config_dir() -> str:
    """Absolute path of the config tree: samrs/conf in a wheel, <repo>/conf in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"samrs configs not found next to {package} (looked for conf/train.yaml)")


def samrs_main(config_name: str) -> Callable:
    """hydra.main bound to samrs' config tree, independent of the current directory."""
    return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)
