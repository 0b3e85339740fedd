"""conf/source/*.yaml: each builds its reader, and a missing root fails with Hydra's message."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from samrs.sources.base import Source

SOURCES = {"dota": "sota"}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_config_instantiates(repo_root, tmp_path, name):
    cfg = OmegaConf.load(repo_root / "conf/source" / f"{name}.yaml")
    with pytest.raises(MissingMandatoryValue, match="root"):
        instantiate(cfg)
    cfg.root = str(tmp_path)
    source = instantiate(cfg)
    assert isinstance(source, Source) and source.name == name
    assert source.classes.name == SOURCES[name]
