"""One directory per multirun sweep, fixed once for all its jobs (a Hydra callback).

Hydra resolves `hydra.sweep.dir` again in every job, from that job's config: with the directory
named after `name`, which each experiment sets, the jobs of a sweep over experiments would land
in the experiments' directories, among the jobs of earlier sweeps of those experiments. Before
the sweep starts, this callback resolves the directory once and pins it for every job:

- a sweep named on the command line (`-m name=grid ...`): `<parent>/grid`, stable, so running the
  same sweep again (with `ckpt_path=last`) resumes its jobs. A directory that holds another sweep
  (other overrides) is refused: each job number would otherwise be another job's directory.
- an unnamed sweep: `<parent>/<name>_<date>_<time>`, new each time.
- `hydra.sweep.dir=DIR` on the command line: DIR, untouched.

`<parent>` is the configured sweep directory's parent (`logs/<task>/multirun`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

SWEEP_FILE = ".samrs_sweep.json"
# Overrides that change how a job runs, not which job it is: a sweep re-run with them is the same sweep.
NOT_DEFINING = ("ckpt_path",)


def override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def defining(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if override_key(o) not in NOT_DEFINING)


def earlier_sweep(folder: Path) -> list[str] | None:
    """The defining overrides of the sweep that wrote `folder`, None when it holds none."""
    marker = folder / SWEEP_FILE
    if marker.is_file():
        return json.loads(marker.read_text())["overrides"]
    legacy = folder / "multirun.yaml"  # written by Hydra's basic sweeper
    if legacy.is_file():
        return defining([str(o) for o in OmegaConf.load(legacy).hydra.overrides.task])
    return None


def unused(folder: Path) -> Path:
    """`folder`, or `folder-2`, `folder-3`, ... when it exists (two sweeps started in one second)."""
    candidate, k = folder, 1
    while candidate.exists():
        k += 1
        candidate = folder.with_name(f"{folder.name}-{k}")
    return candidate


class SweepDirectory(Callback):
    """Pins `hydra.sweep.dir` for every job of a sweep (module docstring); `enabled=false` leaves it
    to the config (the label jobs' directories carry their own time stamp)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        if not self.enabled or any(override_key(str(o)) == "hydra.sweep.dir" for o in hydra_cfg.overrides.hydra):
            return
        overrides = [str(o) for o in hydra_cfg.overrides.task]
        names = [o.partition("=")[2] for o in overrides if override_key(o) == "name"]
        configured = Path(str(hydra_cfg.sweep.dir))
        if names and "," not in names[-1]:
            folder = configured.parent / names[-1]
            self._claim(folder, defining(overrides))
        else:
            folder = unused(configured.parent / f"{config.get('name') or 'sweep'}_{time.strftime('%Y-%m-%d_%H-%M-%S')}")
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.sweep.dir = str(folder)
            # every job's config is composed again from these overrides: the directory holds for all
            hydra_cfg.overrides.hydra.append(f"hydra.sweep.dir='{folder}'")

    @staticmethod
    def _claim(folder: Path, overrides: list[str]) -> None:
        earlier = earlier_sweep(folder)
        if earlier is not None and earlier != overrides:
            print(f"{folder} holds another sweep ({' '.join(earlier) or 'no overrides'}); this one "
                  f"({' '.join(overrides)}) would overwrite its jobs. Name this sweep differently (name=...), "
                  f"or remove that directory.", file=sys.stderr)
            sys.exit(2)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SWEEP_FILE).write_text(json.dumps({"overrides": overrides}, indent=1))
