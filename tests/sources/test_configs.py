"""conf/source/*.yaml: each builds its reader, and a missing root fails with Hydra's message."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from samrs.sources.base import Source

SOURCES = {"dota": "sota", "dior": "sior", "fair1m": "fast", "hrsc2016": "hrsc2016", "isaid": "sota"}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_config_instantiates(repo_root, tmp_path, name):
    cfg = OmegaConf.load(repo_root / "conf/source" / f"{name}.yaml")
    with pytest.raises(MissingMandatoryValue, match="root"):
        instantiate(cfg)
    cfg.root = str(tmp_path)
    source = instantiate(cfg)
    assert isinstance(source, Source) and source.name == name
    assert source.classes.name == SOURCES[name]


# Where each config finds the generated dataset of its format, and the overrides it needs there.
GENERATED_ROOTS = {
    "dota": ("dota", "DOTA", {}),
    "isaid": ("dota", "iSAID", {"split": "train"}),
    "dior": ("dior", "", {}),
    "fair1m": ("fair1m", "", {}),
    "hrsc2016": ("hrsc2016", "", {"split": ["trainval", "test"]}),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_config_reads_its_format(repo_root, generated, problems, name):
    """The configs' defaults (lists arrive as OmegaConf ListConfig) read the real layouts."""
    fmt, folder, overrides = GENERATED_ROOTS[name]
    cfg = OmegaConf.load(repo_root / "conf/source" / f"{name}.yaml")
    cfg.root = str(generated[fmt] / folder)
    cfg.merge_with(overrides)
    source = instantiate(cfg)
    records = [source.read(item, problems) for item in source.items(problems)]
    assert len(records) == 8 and all(r.objects for r in records) and problems == []
