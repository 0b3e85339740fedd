"""Collect scored label runs into the paper's Table 1: python -m samrs.quality_table [runs=[DIR,...]].

Finds every quality.json under `runs` (default: logs/label_quality, where samrs.label_quality writes),
and writes table1.md and table1.csv to output_dir (the run directory unless set), printing the
markdown. See docs/label_quality.md.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from samrs.labeling.quality.table import Table, build_tables, find_runs, render_csv, render_markdown
from samrs.utils.hydra import samrs_main
from samrs.utils.io import write_text
from samrs.utils.runs import run_collector


def collect(cfg: DictConfig) -> list[Table]:
    """Build the tables of the runs in `cfg.runs` and write them to `cfg.output_dir`."""
    paths = [cfg.runs] if isinstance(cfg.runs, str) else list(cfg.runs)
    tables = build_tables(find_runs(paths), OmegaConf.to_container(cfg.paper), list(cfg.order))
    out = Path(cfg.output_dir)
    markdown = render_markdown(tables, int(cfg.digits))
    write_text(out / cfg.files.markdown, markdown)
    write_text(out / cfg.files.csv, render_csv(tables))
    print(markdown)
    print(f"written: {out / cfg.files.markdown}, {out / cfg.files.csv}")
    return tables


@samrs_main("quality_table")
def main(cfg: DictConfig) -> None:
    run_collector(collect, cfg)


if __name__ == "__main__":
    main()
