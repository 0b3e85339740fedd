"""Where the Hydra configs are, and the entry-point decorator every job uses."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Callable, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from samrs.errors import ConfigError, exit_on_user_error
from samrs.utils.workers import usable_cores


def config_dir() -> str:
    """Absolute path of the config tree: samrs/conf in a wheel, <repo>/conf in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"samrs configs not found next to {package} (looked for conf/train.yaml)")


def samrs_main(config_name: str) -> Callable:
    """hydra.main bound to samrs' config tree, independent of the current directory; a user error
    (samrs.errors.UserError) ends the job with `error: <message>` and exit status 2, and so does an
    unknown option of a config group on the command line (`experiment=sep_swin_tt`), which Hydra
    would answer with its whole list of options."""
    main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)

    def run(task: Callable) -> Callable:
        def entry() -> None:
            exit_on_user_error(check_group_options)(sys.argv[1:], Path(config_dir()))
            main(exit_on_user_error(task))()

        return entry

    return run


def check_group_options(args: Sequence[str], conf: Path) -> None:
    """Refuse `group=option` overrides whose option has no config file, naming the closest options."""
    for arg in args:
        key, eq, value = arg.lstrip("+~").partition("=")
        group = conf / key.replace(".", "/")
        if not eq or key.startswith("hydra") or not group.is_dir() or value in ("", "null"):
            continue
        known = sorted(p.stem for p in group.glob("*.yaml"))
        for option in value.strip("[]").split(","):  # a sweep (a,b) or a list ([a,b]) of options
            if option and option not in known and "$" not in option and "(" not in option:
                close = difflib.get_close_matches(option, known, n=3, cutoff=0.6)
                hint = f"did you mean {' or '.join(close)}? " if close else ""
                raise ConfigError(f"{key}={option}: no such option ({hint}the options are the files of "
                                  f"{group.relative_to(conf.parent) if conf.parent in group.parents else group}/)")


def run_name_of(ckpt_path: str | None) -> str:
    """A run name from a checkpoint path or run directory, unique across runs and sweeps:
    logs/train/demo/checkpoints/last.ckpt -> demo-last, logs/train/multirun/tables/3 -> tables-3
    (a multirun job's directory is only its number)."""
    if not ckpt_path:
        return "default"
    path = Path(str(ckpt_path))
    run_dir = path
    if path.suffix == ".ckpt":
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    run = run_dir.name
    if run.isdigit() and run_dir.parent.name:
        run = f"{run_dir.parent.name}-{run}"
    if path.suffix == ".ckpt":
        return f"{run}-{path.stem}" if run else path.stem
    return run or "default"


def group_choice(group: str, *, _root_: DictConfig) -> str:
    """The option chosen for config group `group` (`${group_choice:source}`), wherever Hydra resolves it.

    `${hydra:runtime.choices.X}` needs the per-job HydraConfig, which does not exist yet when a
    multirun names its sweep directory; there the root config still holds the `hydra` node, and a
    swept group's value is the sweep's list (`box_fill,polygon_fill`), read from the overrides.
    Each job then resolves its own choice, so a sweep directory must not depend on a swept group.
    """
    hydra_cfg = _root_.get("hydra") if "hydra" in _root_ else None
    if hydra_cfg is None:  # inside a job: Hydra has moved its node out of the job's config
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    for override in hydra_cfg.overrides.task:
        key, sep, value = str(override).partition("=")
        if sep and key.lstrip("+~") == group:
            return value
    choices = hydra_cfg.runtime.choices
    return "unset" if group not in choices or OmegaConf.is_missing(choices, group) else str(choices[group])


def labeling_setting(*, _root_: DictConfig) -> str:
    """The labeler's choice, and for SAM its model and prompt: `box_fill`, `sam_vit_h_hbox_cp`
    (`${labeling_setting:}`), so that runs with other prompts get other directories."""
    labeler = group_choice("labeler", _root_=_root_)
    if labeler != "sam":
        return labeler
    return "_".join([labeler, group_choice("sam", _root_=_root_), group_choice("prompt", _root_=_root_)])


def usable_cores_at_most(most: int | None = None) -> int:
    """`${usable_cores:}`: the CPU cores this process may use; `${usable_cores:8}`: at most 8 of them
    (worker counts that never exceed the machine, so small machines get no oversubscription warning)."""
    cores = usable_cores()
    return cores if most is None else max(0, min(int(most), cores))


# Resolvers the configs use; registered when any entry point imports this module.
if not OmegaConf.has_resolver("run_name_of"):
    OmegaConf.register_new_resolver("run_name_of", run_name_of)
if not OmegaConf.has_resolver("group_choice"):
    OmegaConf.register_new_resolver("group_choice", group_choice)
if not OmegaConf.has_resolver("labeling_setting"):
    OmegaConf.register_new_resolver("labeling_setting", labeling_setting)
if not OmegaConf.has_resolver("usable_cores"):
    OmegaConf.register_new_resolver("usable_cores", usable_cores_at_most)
