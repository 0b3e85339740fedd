"""Label and score the labels against ground-truth masks: python -m samrs.label_quality
source.root=DIR [labeler=... prompt=... sam=... -m ...]. The label job (samrs.label) with the
settings of SAMRS Table 1: HRSC2016's segmented test images, SAM, the subset written into the run
directory, quality.json beside it. Collect many runs with python -m samrs.quality_table.
See docs/label_quality.md.
"""

from __future__ import annotations

from omegaconf import DictConfig

from samrs.label import run_job
from samrs.utils.hydra import samrs_main


@samrs_main("label_quality")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
