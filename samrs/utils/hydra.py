"""Where the Hydra configs are, and the entry-point decorator every job uses."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import hydra
from omegaconf import OmegaConf


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


def run_name_of(ckpt_path: str | None) -> str:
    """A run name from a checkpoint path: logs/train/demo/checkpoints/last.ckpt -> demo-last."""
    if not ckpt_path:
        return "default"
    path = Path(str(ckpt_path))
    if path.suffix != ".ckpt":
        return path.name or "default"
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    return f"{run}-{path.stem}" if run else path.stem


# Resolvers the configs use; registered when any entry point imports this module.
if not OmegaConf.has_resolver("run_name_of"):
    OmegaConf.register_new_resolver("run_name_of", run_name_of)
