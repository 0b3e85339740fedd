"""Starting points of fine-tuning (start=random|imp|rsp|sep|imp_sep|rsp_sep): what each loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from finetune_helpers import compose_train
from hydra.utils import instantiate

from samrs.models import export_pretrained
from samrs.train import check_start

SEP_HEADS = {"sota": 18, "sior": 20, "fast": 37}


def ft_net(*overrides: str, experiment: str = "ft_potsdam_r50_upernet_debug"):
    cfg = compose_train([f"experiment={experiment}", "model.net.heads={potsdam: 5}", *overrides])
    return cfg, instantiate(cfg.model.net)


@pytest.fixture(scope="module")
def sep_export(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The trunk of a (debug-size) SEP model with SOTA/SIOR/FAST heads, exported as pretrained.pt."""
    cfg = compose_train(["experiment=sep_r50_upernet_debug", f"model.net.heads={SEP_HEADS}".replace("'", "")])
    torch.manual_seed(1)
    state = instantiate(cfg.model.net).state_dict()
    path = export_pretrained(state, tmp_path_factory.mktemp("sep") / "pretrained.pt", {"backbone": "resnet50"})
    return path, state


@pytest.mark.parametrize("start", ["sep", "imp_sep", "rsp_sep"])
def test_pretraining_loads_and_only_the_classifier_is_new(sep_export, start):
    path, sep_state = sep_export
    torch.manual_seed(2)
    cfg, net = ft_net(f"start={start}", f"start.checkpoint={path}")
    assert cfg.model.net.pretrained == str(path) and cfg.start.key == start
    state = net.state_dict()
    new = sorted(set(state) - set(sep_state))
    assert new == ["heads.potsdam.1.bias", "heads.potsdam.1.weight"]
    shared = [k for k in state if k in sep_state]
    assert all(torch.equal(state[k], sep_state[k]) for k in shared)
    assert any(k.startswith("backbone.") for k in shared) and any(k.startswith("decoder.") for k in shared)
    assert state["heads.potsdam.1.weight"].shape[0] == 5


def test_default_pretraining_files_are_the_sep_runs():
    for start, run in (("sep", "sep_swin_t"), ("imp_sep", "sep_swin_t_imp"), ("rsp_sep", "sep_swin_t_rsp")):
        cfg = compose_train(["experiment=ft_isaid_swin_t", f"start={start}", "paths.log_dir=/runs"])
        assert cfg.start.checkpoint == f"/runs/train/{run}/pretrained.pt"
        assert cfg.model.net.pretrained == cfg.start.checkpoint and not cfg.model.net.backbone.pretrained
    pre = compose_train(["experiment=sep_swin_t", "start=imp"])
    assert pre.name == "sep_swin_t_imp" and pre.model.net.backbone.pretrained


@pytest.mark.parametrize("start", ["imp", "rsp"])
def test_backbone_weight_files_load_the_backbone_alone(start, tmp_path):
    torch.manual_seed(3)
    weights = timm.create_model("resnet50", layers=[1, 1, 1, 1], base_width=16).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(weights, path)
    cfg, net = ft_net(f"start={start}", f"start.checkpoint={path}")
    assert cfg.model.net.pretrained is None and cfg.model.net.backbone.checkpoint == str(path)
    loaded = net.backbone.model.state_dict()
    assert loaded and all(torch.equal(v, weights[k]) for k, v in loaded.items())


def test_random_start_and_missing_files():
    cfg = compose_train(["experiment=ft_potsdam_vit_b", "start=random"])
    assert not cfg.model.net.backbone.pretrained and cfg.model.net.pretrained is None
    assert compose_train(["experiment=ft_potsdam_vit_b"]).start.key == "imp"  # the fine-tuning default
    missing = compose_train(["experiment=ft_potsdam_r50_upernet", "start=imp_sep", "paths.log_dir=/nonexistent"])
    with pytest.raises(FileNotFoundError, match=r"start=imp_sep: no weight file /nonexistent/train/sep_r50_upernet_imp/"
                                                r"pretrained.pt .*experiment=sep_r50_upernet start=imp"):
        check_start(missing)
