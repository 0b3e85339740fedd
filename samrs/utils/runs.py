"""The plumbing every job shares: config printing, instantiating lists, run directories."""

from __future__ import annotations

import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import hydra
from omegaconf import DictConfig, OmegaConf

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.utils.logging import get_logger
from samrs.utils.torchfiles import read_torch_file

if TYPE_CHECKING:  # torch only where a checkpoint is read: the label job starts without it
    import torch

log = get_logger(__name__)


def apply_extras(cfg: DictConfig) -> None:
    """Stop on required values left unset; print the composed config as a tree and silence warnings,
    as `extras` says."""
    require_values(cfg)
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        warnings.filterwarnings("ignore")
    if extras.get("print_config"):
        print_config_tree(cfg)


def require_values(cfg: DictConfig) -> None:
    """A value the config marks `???` and the command line did not give: a user error naming it,
    instead of a traceback from wherever it is first read."""
    missing = sorted(_missing_keys(OmegaConf.to_container(cfg, resolve=False)))
    if missing:
        given = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(
            f"required {'value' if len(missing) == 1 else 'values'} not set: {', '.join(missing)}. "
            f"Give {'it' if len(missing) == 1 else 'them'} on the command line ({given}); `--cfg job` prints the "
            f"composed config, its comments in conf/ say what each key takes.")


def _missing_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the `???` values (OmegaConf.missing_keys resolves interpolations on the way, and
    fails on one that reads a missing value before it can name it)."""
    if node == "???":
        return [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    return [key for k, value in items for key in _missing_keys(value, f"{prefix}.{k}" if prefix else str(k))]


def print_config_tree(cfg: DictConfig) -> None:
    from rich import print as rprint
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    for key, value in cfg.items():
        branch = tree.add(str(key), style="bold")
        text = OmegaConf.to_yaml(value, resolve=False) if isinstance(value, DictConfig) else str(value)
        branch.add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    rprint(tree)


def instantiate_dict(cfg: DictConfig | None, kind: type) -> list[Any]:
    """Instantiate every entry of a config dict ({name: {_target_: ...}}), e.g. callbacks."""
    out = []
    for name, entry in (cfg or {}).items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise ConfigError(f"{name}: expected a config with _target_, got {entry!r}")
        obj = hydra.utils.instantiate(entry)
        if not isinstance(obj, kind):
            raise ConfigError(f"{name}: {entry._target_} is not a {kind.__name__}")
        out.append(obj)
    return out


def instantiate_callbacks(cfg: DictConfig | None) -> list:
    from lightning.pytorch import Callback

    return instantiate_dict(cfg, Callback)


def instantiate_loggers(cfg: DictConfig | None) -> list:
    from lightning.pytorch.loggers import Logger

    return instantiate_dict(cfg, Logger)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: str | Path, resuming: bool = True) -> str | None:
    """None, "last" (this run's checkpoints/last.ckpt), a run directory or a checkpoint file; the
    message for a missing one says what to give to resume a training (`resuming`) or to evaluate."""
    if ckpt_path in (None, "", "null"):
        return None
    path = Path(output_dir) if ckpt_path == "last" else Path(ckpt_path)
    if path.is_dir():
        path = path / "last.ckpt" if (path / "last.ckpt").is_file() else path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        hint = ("Resume needs the run directory of an earlier run (same name=...), or a .ckpt file; leave ckpt_path "
                "unset to start fresh." if resuming else
                "Give a training run's directory (logs/train/<name>: its checkpoints/last.ckpt) or a .ckpt file.")
        raise MissingPathError(f"ckpt_path={ckpt_path}: no checkpoint at {path}. {hint}")
    return str(path)


def keep_previous_checkpoints(output_dir: str | Path) -> Path | None:
    """A fresh run in a directory that holds checkpoints moves them to checkpoints-<time>/ first,
    so nothing of the earlier run is overwritten; returns where they went."""
    ckpt_dir = Path(output_dir) / "checkpoints"
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(ckpt_dir.stat().st_mtime))
    target = ckpt_dir.with_name(f"checkpoints-{stamp}")
    ckpt_dir.rename(target)
    log.warning("fresh run in %s: the earlier run's checkpoints were moved to %s "
                "(use ckpt_path=last to resume instead)", output_dir, target)
    return target


def check_resume_checkpoint(model: torch.nn.Module, ckpt_path: str | Path) -> None:
    """Fail before training when a checkpoint to resume from was written by another model (other
    backbone, decoder or class counts), naming the keys that differ."""
    from samrs.models.weights import describe_mismatch

    checkpoint = read_lightning_checkpoint(ckpt_path)
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if state is None:
        raise BadFileError(f"ckpt_path={ckpt_path}: not a Lightning checkpoint (no state_dict)")
    problem = describe_mismatch({k: v.shape for k, v in model.state_dict().items()}, state)
    if problem:
        raise ConfigError(
            f"ckpt_path={ckpt_path} does not fit the model of this config: {problem}. Resume with the experiment "
            f"and overrides that wrote it (see .hydra/overrides.yaml in its run directory), or leave ckpt_path unset "
            f"to start fresh (to start from its weights with new heads, use model.net.pretrained=...)."
        )


@contextmanager
def discard_run_dir_on_failure(output_dir: str | Path) -> Iterator[None]:
    """Remove the run directory Hydra made for a job that failed before writing anything: it holds
    only Hydra's own files (.hydra/, the log) and would look like a result."""
    try:
        yield
    except BaseException:
        run_dir = Path(output_dir)
        if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def read_lightning_checkpoint(ckpt_path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint, read lazily (mmap); a cut or foreign file is a one-line user error.
    Lightning checkpoints pickle their hyper-parameters, hence weights_only=False."""
    return read_torch_file(ckpt_path, "Lightning checkpoint", weights_only=False, mmap=True)


def run_collector(collect: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run a job that gathers files into tables (its missing or unreadable inputs are user errors)."""
    apply_extras(cfg)
    collect(cfg)
