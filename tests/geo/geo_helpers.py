"""Helpers of the georeferenced-data tests, importable by name (conftest puts this folder on sys.path)."""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L

from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.sources.geo import GeoSource
from samrs.sources.tiling import Tiling

# Two 600 x 700 scenes (4 bands, uint16, UTM 33N) drawn in 320 px blocks; 256 px tiles with a 56 px
# gap, every object kept in every tile it touches (min_visible 0), so each label pixel is known.
SCENES = dict(count=2, size=(600, 700), seed=5, num_objects=(3, 6), block=320)
TILING = Tiling(size=256, gap=56, min_visible=0.0)


def cpu_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, enable_model_summary=False, **kwargs)


def label_geo(scenes: Path, out: Path, **options) -> dict:
    """polygon_fill over the generated scenes (boxes in EPSG:4326), every band kept, on one CPU process."""
    source = GeoSource(scenes / "images", scenes / "boxes.geojson")
    options = {"tiling": TILING, "progress": False, "output_format": "auto", "output_bands": "all",
               "tiles_per_item": 4, **options}
    return run_labeling(source, PolygonFillLabeler(), out, make_trainer=functools.partial(cpu_trainer), **options)


def untrained_checkpoint(path: Path, overrides: list[str], heads: dict[str, int]) -> Path:
    """A samrs checkpoint (model weights and the training config, as samrs.train stores them) of the
    experiment composed from `overrides`, randomly initialised: what samrs.predict reads."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from samrs.utils.hydra import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=/tmp/unused", "paths.work_dir=/tmp", *overrides])
    with open_dict(cfg):
        cfg.model.net.heads = heads
        cfg.model.class_names = {k: [f"class{i}" for i in range(n)] for k, n in heads.items()}
    model = instantiate(cfg.model)
    torch.manual_seed(0)
    for p in model.parameters():  # weights that make the classes differ across an image
        torch.nn.init.normal_(p, std=0.3)
    torch.save({"state_dict": model.state_dict(), "samrs_config": OmegaConf.to_container(cfg, resolve=True)}, path)
    return path
