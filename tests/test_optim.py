"""Parameter groups (weight decay, layer-wise lr decay, frozen parts) and the cosine schedule."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from samrs.models import MultiHeadSegmentor, MultiLevelNeck, TimmBackbone, UperNetDecoder
from samrs.tasks.optim import cosine_with_warmup, freeze, param_groups

HEADS = {"sota": 18, "sior": 20}


def group_of(groups: list[dict], net: torch.nn.Module) -> dict[str, dict]:
    """parameter name -> its group."""
    by_id = {id(p): g for g in groups for p in g["params"]}
    return {n: by_id[id(p)] for n, p in net.named_parameters() if id(p) in by_id}


@pytest.fixture(scope="module")
def swin_net() -> MultiHeadSegmentor:
    backbone = TimmBackbone("swin_tiny_patch4_window7_224", embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    return MultiHeadSegmentor(backbone, partial(UperNetDecoder, channels=8), HEADS)


@pytest.fixture(scope="module")
def vit_net() -> MultiHeadSegmentor:
    backbone = TimmBackbone("vit_base_patch16_224", embed_dim=32, depth=4, num_heads=2, out_indices=(0, 1, 2, 3))
    return MultiHeadSegmentor(backbone, partial(UperNetDecoder, channels=8), HEADS, neck=MultiLevelNeck)


def test_swin_groups_exclude_norms_and_position_tables_from_decay(swin_net):
    groups = param_groups(swin_net, lr=6e-5, weight_decay=0.01, no_decay_norm=True,
                          no_decay_names=["absolute_pos_embed", "relative_position_bias_table"])
    assert [g["name"] for g in groups] == ["decay", "no_decay"]
    wd = {n: g["weight_decay"] for n, g in group_of(groups, swin_net).items()}
    assert len(wd) == sum(1 for _ in swin_net.parameters())  # every parameter in exactly one group
    tables = [n for n in wd if "relative_position_bias_table" in n]
    norms = [n for n in wd if ".norm" in n or n.endswith(("norm.weight", "norm.bias"))]
    decoder_bn = "decoder.fuse.1.weight"
    assert tables and norms
    assert all(wd[n] == 0.0 for n in tables + norms + [decoder_bn])
    assert wd["backbone.model.layers_0.blocks.0.attn.qkv.weight"] == 0.01
    assert wd["heads.sota.1.bias"] == 0.01  # biases decay unless no_decay_bias
    assert all(g["lr"] == 6e-5 for g in groups)


def test_official_resnet_setting_decays_everything():
    net = MultiHeadSegmentor(TimmBackbone("resnet18"), partial(UperNetDecoder, channels=8), HEADS)
    groups = param_groups(net, lr=1e-3, weight_decay=0.05, no_decay_norm=False)
    assert [(g["name"], g["weight_decay"], len(g["params"])) for g in groups] == [
        ("decay", 0.05, len(list(net.parameters())))
    ]


def test_vit_layer_decay_scales_lr_by_depth(vit_net):
    groups = param_groups(vit_net, lr=1e-3, weight_decay=0.05, no_decay_bias=True,
                          no_decay_names=["pos_embed", "cls_token"], layer_decay=0.9)
    g = group_of(groups, vit_net)
    # 4 blocks: embeddings are layer 0, block i is layer i + 1, everything after the backbone layer 5.
    assert g["backbone.model.model.pos_embed"]["lr"] == pytest.approx(1e-3 * 0.9**5)
    assert g["backbone.model.model.pos_embed"]["weight_decay"] == 0.0
    assert g["backbone.model.model.patch_embed.proj.weight"]["lr"] == pytest.approx(1e-3 * 0.9**5)
    assert g["backbone.model.model.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(1e-3 * 0.9**4)
    assert g["backbone.model.model.blocks.3.mlp.fc1.weight"]["lr"] == pytest.approx(1e-3 * 0.9)
    assert g["backbone.model.model.blocks.3.mlp.fc1.bias"]["weight_decay"] == 0.0
    assert g["backbone.model.model.blocks.3.mlp.fc1.weight"]["weight_decay"] == 0.05
    assert g["decoder.fuse.0.weight"]["lr"] == pytest.approx(1e-3)
    assert g["neck.levels.0.0.weight"]["name"] == "layer05/decay"


def test_layer_decay_needs_a_grouped_backbone(swin_net):
    with pytest.raises(ValueError, match="layer_decay=null"):
        param_groups(swin_net, lr=1e-3, weight_decay=0.05, layer_decay=0.9)


def test_frozen_parameters_leave_the_groups():
    net = MultiHeadSegmentor(TimmBackbone("resnet18"), partial(UperNetDecoder, channels=8), HEADS)
    frozen = freeze(net, [r"^backbone\.model\.(conv1|bn1|layer1)\."])
    assert frozen and all(n.startswith(("backbone.model.conv1", "backbone.model.bn1", "backbone.model.layer1"))
                          for n in frozen)
    grouped = set(group_of(param_groups(net, 1e-3, 0.05), net))
    assert grouped.isdisjoint(frozen)
    assert "backbone.model.layer2.0.conv1.weight" in grouped
    with pytest.raises(ValueError, match="matches no parameter"):
        freeze(net, [r"^encoder\."])


def test_cosine_schedule_per_iteration_to_min_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1e-3}, {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4}])
    sched = cosine_with_warmup(opt, total_steps=10, warmup_steps=2, min_lr=5e-6)
    lrs = []
    for _ in range(12):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert lrs[0][0] == pytest.approx(0.5e-3) and lrs[1][0] == pytest.approx(1e-3)  # linear warm-up
    t = (5 - 2) / 8
    assert lrs[5][0] == pytest.approx(5e-6 + (1e-3 - 5e-6) * 0.5 * (1 + math.cos(math.pi * t)))
    assert lrs[10] == pytest.approx([5e-6, 5e-6]) and lrs[11] == pytest.approx([5e-6, 5e-6])  # same floor for all
