"""Helpers of the fine-tuning tests, importable by name (conftest puts this folder on sys.path):
data configs composed as the train job composes them."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from samrs.data.finetune import FinetuneDataModule
from samrs.utils.hydra import config_dir

POTSDAM_SAMPLE = "mmseg_rs/tests/data/pseudo_potsdam_dataset"
VAIHINGEN_SAMPLE = "mmseg_rs/tests/data/pseudo_vaihingen_dataset"
LOVEDA_SAMPLE = "mmseg_rs/tests/data/pseudo_loveda_dataset"
ISAID_SAMPLE = "isaid_devkit/preprocess/dataset/iSAID"


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


def finetune_data(config: str, data_dir: Path, *overrides: str) -> FinetuneDataModule:
    """data=`config` with its files under `data_dir` (generated there when the config says so)."""
    cfg = compose_train([f"data={config}", f"paths.data_dir={data_dir}", *overrides])
    return instantiate(cfg.data)


def ready(module: FinetuneDataModule, stage: str = "fit") -> FinetuneDataModule:
    module.prepare_data()
    module.setup(stage)
    return module
