"""Dataset statistics: python -m samrs.stats subsets=[DIR,...] [overrides].

For each SAMRS-format subset: images, classes, instances and image sizes (the paper's Table 2 row),
pixels and instances per class (Figure 5), mask sizes (Figure 6), labeled-pixel fraction and
instances per image, and a grid of examples with their labels overlaid (Figure 4). Writes
stats.json, stats.md and figures/*.png to the run directory; returns the report dict.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from samrs.analysis import figures as stat_figures
from samrs.analysis.counts import StatsSettings, compute_subset_stats
from samrs.analysis.examples import examples_figure, pick_examples
from samrs.analysis.report import build_report, render_markdown
from samrs.analysis.subset import SubsetFiles, open_subset
from samrs.errors import ConfigError
from samrs.utils.hydra import samrs_main
from samrs.utils.io import write_json, write_text
from samrs.utils.logging import get_logger
from samrs.utils.runs import apply_extras
from samrs.viz import save_figure

log = get_logger(__name__)


def open_subsets(cfg: DictConfig) -> list[SubsetFiles]:
    """The configured subsets; a name shared by several gets a numbered suffix, so files do not clash."""
    roots = [cfg.subsets] if isinstance(cfg.subsets, str) else list(cfg.subsets)
    if not roots:
        raise ConfigError("subsets is empty: give one or more subset directories, subsets=[DIR,...]")
    subsets, seen = [], {}
    for root in roots:
        files = open_subset(root, cfg.classes, **cfg.layout)
        seen[files.name] = seen.get(files.name, 0) + 1
        if seen[files.name] > 1:
            files = replace(files, name=f"{files.name}-{seen[files.name]}")
        subsets.append(files)
    return subsets


def write_examples(files: SubsetFiles, cfg: DictConfig, out: Path) -> Path | None:
    """Figure 4 of one subset; None when it has no readable image with a label to show."""
    ex = cfg.examples
    names = pick_examples(files, list(ex.names) if ex.names else None, int(ex.count), int(ex.seed))
    if not names:
        log.warning("%s: no image with a label map to show as an example", files.name)
        return None
    fig = examples_figure(files, names, int(ex.columns), float(ex.alpha), float(ex.tile_inches), bool(ex.show_image))
    if fig is None:
        return None
    path = out / "figures" / f"examples_{files.name}.png"
    save_figure(fig, path, dpi=int(cfg.figures.dpi))
    return path


def class_pixels_key(choice: str) -> str:
    """The stats field Figure 5 draws for figures.class_pixels (checked before any counting)."""
    keys = {"labels": "pixels", "instances": "instance_pixels"}
    if choice not in keys:
        raise ConfigError(f"figures.class_pixels must be 'labels' or 'instances', got {choice!r}")
    return keys[choice]


def stat_figures_of(stats: list[dict[str, Any]], cfg: DictConfig) -> dict[str, Figure]:
    """file stem -> figure for the statistics figures."""
    f = cfg.figures
    return {
        "class_distribution": stat_figures.class_distribution(stats, log=bool(f.log_scale),
                                                              pixel_key=class_pixels_key(f.class_pixels)),
        "mask_sizes": stat_figures.mask_size_distribution(stats),
        "objects_per_image": stat_figures.objects_per_image(stats),
        "labeled_fraction": stat_figures.labeled_fraction(stats),
    }


def run_stats(cfg: DictConfig) -> dict[str, Any]:
    """Compute, write and return the report of every subset in `cfg.subsets`."""
    out = Path(cfg.output_dir)
    settings = StatsSettings.from_config(cfg)
    class_pixels_key(cfg.figures.class_pixels)
    subsets = open_subsets(cfg)
    captions: dict[str, str] = {}
    stats = []
    for files in subsets:
        if cfg.compute_stats:
            stats.append(compute_subset_stats(files, settings, int(cfg.num_workers), bool(cfg.progress)))
            log_problems(stats[-1])
        path = write_examples(files, cfg, out) if cfg.examples.enabled else None
        if path is not None:
            captions[f"Examples of {files.name}"] = str(path.relative_to(out))
            log.info("examples of %s: %s", files.name, path)
    if not stats:
        return {"subsets": []}
    if cfg.figures.enabled:
        for stem, fig in stat_figures_of(stats, cfg).items():
            save_figure(fig, out / "figures" / f"{stem}.png", dpi=int(cfg.figures.dpi))
            captions[stem.replace("_", " ")] = f"figures/{stem}.png"
    report = build_report(stats, asdict(settings), OmegaConf.to_container(cfg.paper))
    write_json(out / "stats.json", report)
    write_text(out / "stats.md", render_markdown(report, captions))
    log.info("statistics written to %s (stats.json, stats.md, figures/)", out)
    return report


def log_problems(stats: dict[str, Any]) -> None:
    counts = stats["problems"]["counts"]
    if counts:
        log.warning("%s: problems found: %s (examples in stats.json / stats.md)", stats["subset"],
                    ", ".join(f"{k} {v}" for k, v in counts.items()))


@samrs_main("stats")
def main(cfg: DictConfig) -> None:
    apply_extras(cfg)
    run_stats(cfg)


if __name__ == "__main__":
    main()
