"""Label a detection dataset into a SAMRS-format subset: python -m samrs.label source=NAME
source.root=DIR labeler=NAME output_dir=DIR [overrides]. See docs/labeling.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from samrs.errors import UserError
from samrs.labeling.base import Labeler
from samrs.labeling.job import UsageError, needs_device, run_labeling
from samrs.labeling.quality.evaluate import evaluate_subset, quality_summary
from samrs.labeling.quality.truth import has_truth
from samrs.sources.base import BorderRules
from samrs.sources.tiling import Tiling
from samrs.utils.hydra import samrs_main
from samrs.utils.runs import apply_extras


class NothingToScoreError(UserError):
    """quality.enabled=true, but the run labeled no image: there are no labels to score."""


def required_output_dir(cfg: DictConfig) -> Path:
    if OmegaConf.is_missing(cfg, "output_dir") or not cfg.output_dir:
        raise UsageError(
            "output_dir is required: the directory the subset is written to, e.g. "
            "python -m samrs.label source=dota source.root=data/DOTA labeler=polygon_fill output_dir=data/sota"
        )
    return Path(cfg.output_dir)


def label(cfg: DictConfig) -> dict[str, Any] | None:
    """Instantiate source, labeler and tiling from `cfg` and label, then score the labels when
    quality.enabled; returns meta.json on rank zero."""
    output_dir = required_output_dir(cfg)
    source = hydra.utils.instantiate(cfg.source)
    quality = cfg.get("quality") or {}
    if quality.get("enabled") and not has_truth(source):  # before hours of labeling, not after
        raise UsageError(f"quality.enabled=true: source {source.name} has no ground-truth masks to score labels "
                         "against; use source=hrsc2016 (its segmented test images) or source=isaid (iSAID masks "
                         "on the DOTA images)")
    labeler = hydra.utils.instantiate(cfg.labeler)
    tiling = hydra.utils.instantiate(cfg.tiling) if cfg.get("tiling") else Tiling()
    # the tiling's min_visible holds at the image border too
    source.border_rules = BorderRules(tiling.min_visible, cfg.implausible_box_scale)
    meta = run_labeling(
        source,
        labeler,
        output_dir,
        tiling=tiling,
        overlap=cfg.overlap,
        write_color=cfg.write_color,
        val_fraction=cfg.val_fraction,
        keep_empty=cfg.keep_empty,
        strict=cfg.strict,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        progress=cfg.progress,
        make_trainer=trainer_factory(cfg.trainer, labeler),
        output_format=cfg.get("output_format", "png"),
        output_bands=(cfg.get("output") or {}).get("bands", "rgb"),
        tiles_per_item=cfg.get("tiles_per_item", 16),
    )
    if meta is not None and quality.get("enabled"):  # rank zero, once every rank has written
        if not meta["counts"]["images"]:
            raise NothingToScoreError(nothing_to_score(cfg, output_dir))
        report = evaluate_subset(output_dir, source, instances_csv=quality.instances_csv, progress=cfg.progress)
        print(quality_summary(report, output_dir))
    return meta


def processes(trainer_cfg: DictConfig) -> int:
    """How many processes the trainer config asks for; `devices: auto` counts as one (a model-free
    labeler has no device to fill)."""
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, str):
        devices = 1 if devices == "auto" else len(devices.split(",")) if "," in devices else int(devices)
    elif not isinstance(devices, int):
        devices = len(devices)
    return (devices if devices > 0 else 2) * int(trainer_cfg.get("num_nodes") or 1)  # -1: all, more than one


def trainer_factory(trainer_cfg: DictConfig, labeler: Labeler) -> Callable[..., Any] | None:
    """The Lightning Trainer's partial for SAM or a run on several processes; None runs a model-free
    labeler in this process, without importing torch or Lightning."""
    if not needs_device(labeler) and processes(trainer_cfg) == 1:
        return None
    return hydra.utils.instantiate(trainer_cfg, _partial_=True)


def nothing_to_score(cfg: DictConfig, output_dir: Path) -> str:
    segmented = " (source.segmented_only=true keeps only the images whose segmentation PNG is in " \
                "source.segmentation_dir)" if cfg.source.get("segmented_only") else ""
    return (f"label quality: nothing to score, no image with ground-truth masks was labeled into {output_dir}: "
            f"check source.root ({cfg.source.root}) and source.split{segmented}; "
            f"{output_dir / 'report.json'} lists what was skipped")


def run_job(cfg: DictConfig) -> None:
    """The label job (samrs_main turns its user errors into `error: ...` and exit status 2)."""
    apply_extras(cfg)
    label(cfg)


@samrs_main("label")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
