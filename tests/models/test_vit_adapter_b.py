"""vit_adapter_b: the official SAMRS ViT-Adapter-B as a timm model (keys, outputs, weight files, lr groups)."""

from __future__ import annotations

import pytest
import timm
import torch
from official_helpers import (assert_debug_experiment_runs, assert_experiments_configured,
                              assert_loads_samrs_checkpoint, assert_official_keys, assert_official_model_outputs,
                              backbone_lr_groups, fill_like_official, load_fixture, official_input)

from samrs.models import TimmBackbone
from samrs.models.backbones.ops import MSDeformAttn, ms_deform_attn_core
from samrs.models.backbones.vit_adapter import checkpoint_filter_fn

FIXTURE = load_fixture("vit_adapter_b")
SMALL = FIXTURE["reduced"]["samrs_kwargs"]  # 4 blocks of 96 channels, one per interaction


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    return fill_like_official(timm.create_model("vit_adapter_b", **SMALL)).eval()


def test_full_size_keys_and_shapes_are_the_official_ones():
    with torch.device("meta"):
        model = timm.create_model("vit_adapter_b")
    assert_official_keys(model, FIXTURE)
    assert model.state_dict()["pos_embed"].shape == (1, 197, 768)  # DeiT-B's grid, class token slot kept


@pytest.mark.parametrize("fan_in", [False, True])
def test_outputs_are_the_official_models(fan_in):
    assert_official_model_outputs("vit_adapter_b", FIXTURE, fan_in)


def test_features_only_backbone_gives_the_four_levels(small):
    backbone = TimmBackbone("vit_adapter_b", **SMALL)
    backbone.model.model.load_state_dict(small.state_dict())
    assert backbone.channels == [96] * 4 and backbone.strides == [4, 8, 16, 32]
    x = official_input(64, batch=2)
    with torch.no_grad():
        feats = backbone.eval()(x)
        direct = small.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(2, 96, 16, 16), (2, 96, 8, 8), (2, 96, 4, 4), (2, 96, 2, 2)]
    assert all(torch.equal(a, b) for a, b in zip(feats, direct))
    backbone.train()
    sum(f.square().mean() for f in backbone(x)).backward()
    grads = [p.grad for p in backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_sides_not_multiple_of_32_are_an_error(small):
    with pytest.raises(ValueError, match="multiples of 32"):
        small(torch.zeros(1, 3, 48, 64))


def deit_layout(embed_dim: int, depth: int, num_heads: int) -> dict[str, torch.Tensor]:
    """A DeiT classification state_dict (the keys of deit_base_patch16_224-b5f2ef4d.pth's "model")."""
    deit = timm.create_model("deit_base_patch16_224", embed_dim=embed_dim, depth=depth, num_heads=num_heads)
    state = deit.state_dict()
    assert {"cls_token", "pos_embed", "norm.weight", "head.weight"} <= set(state)
    return state


def test_deit_file_loads_strictly_through_the_filter(tmp_path):
    deit = deit_layout(96, 4, 4)
    path = tmp_path / "deit.pth"
    torch.save({"model": deit}, path)
    backbone = TimmBackbone("vit_adapter_b", checkpoint=str(path), **SMALL)
    loaded = backbone.model.model.state_dict()
    for key in ("pos_embed", "patch_embed.proj.weight", "blocks.3.attn.qkv.weight", "blocks.0.mlp.fc2.bias"):
        assert torch.equal(loaded[key], deit[key]), key
    # what a DeiT file lacks keeps the official initialisation: layer scale 1, injector gamma 0
    assert torch.equal(loaded["blocks.2.gamma1"], torch.ones(96))
    assert torch.equal(loaded["interactions.1.injector.gamma"], torch.zeros(96))


def test_filter_is_strict_about_everything_else(tmp_path):
    model = timm.create_model("vit_adapter_b", **SMALL)
    deit = deit_layout(96, 4, 4)
    state = checkpoint_filter_fn({"model": {f"module.{k}": v for k, v in deit.items()}}, model)
    assert set(state) == set(model.state_dict())
    foreign = dict(deit, **{"blocks.0.attn.q_bias": torch.zeros(96)})  # a BEiT key
    torch.save({"model": foreign}, tmp_path / "beit_like.pth")
    with pytest.raises(ValueError, match="unexpected blocks.0.attn.q_bias"):
        TimmBackbone("vit_adapter_b", checkpoint=str(tmp_path / "beit_like.pth"), **SMALL)
    torch.save({"model": deit_layout(96, 2, 4)}, tmp_path / "too_shallow.pth")
    with pytest.raises(ValueError, match="missing blocks.2"):
        TimmBackbone("vit_adapter_b", checkpoint=str(tmp_path / "too_shallow.pth"), **SMALL)


def test_official_samrs_checkpoint_loads_whole(small, tmp_path):
    assert_loads_samrs_checkpoint("vit_adapter_b", SMALL, small, tmp_path / "sep.pth")


def test_layer_decay_scales_blocks_and_leaves_the_adapter_at_full_lr():
    group = backbone_lr_groups("vit_adapter_b", SMALL, weight_decay=0.01, no_decay_bias=True,
                               no_decay_names=["pos_embed"], layer_decay=0.95)
    # the official constructor: embeddings layer 0, block i layer i + 1, all else layer depth + 1
    assert group["patch_embed.proj.weight"]["lr"] == pytest.approx(0.95**5)
    assert group["pos_embed"]["weight_decay"] == 0.0
    assert group["blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(0.95**4)
    assert group["blocks.3.mlp.fc1.weight"]["lr"] == pytest.approx(0.95)
    for name in ("spm.stem.0.weight", "interactions.0.injector.attn.value_proj.weight", "level_embed", "up.weight",
                 "norm1.weight"):
        assert group[name]["lr"] == pytest.approx(1.0), name
    assert group["level_embed"]["weight_decay"] == 0.01
    assert group["blocks.1.gamma2"]["weight_decay"] == 0.0


def test_deformable_attention_samples_where_the_offsets_point():
    """One head, one level, one point: the output is the bilinear sample of the values at reference +
    offset (pixels), outside the map zero, as the CUDA op."""
    value = torch.arange(12.0).view(1, 12, 1, 1)  # a 3 x 4 map, one channel
    locations = torch.tensor([[0.5, 0.5], [1.5 / 4, 0.5 / 3], [2.0, 2.0]]).view(1, 3, 1, 1, 1, 2)
    weights = torch.ones(1, 3, 1, 1, 1)
    out = ms_deform_attn_core(value, [(3, 4)], locations, weights)
    # (x, y) = (0.5, 0.5) is pixel (1.5, 1): halfway between values 5 and 6; (1.5/4, 0.5/3) is pixel (1, 0)
    assert out.flatten().tolist() == pytest.approx([5.5, 1.0, 0.0])
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=3, ratio=0.5)
    # official start: head h points at angle 2 pi h / heads, points at 1, 2, 3 steps
    bias = attn.sampling_offsets.bias.view(2, 2, 3, 2)
    assert bias[0, :, :, 0].tolist() == [[1.0, 2.0, 3.0]] * 2 and bias[1, 1, :, 0].tolist() == [-1.0, -2.0, -3.0]
    assert attn.value_proj.out_features == 4


def test_experiments_have_the_official_settings():
    assert_experiments_configured(
        "vit_adapter_b", {"name": "vit_adapter_b", "drop_path_rate": 0.3},
        {"lr": 6e-5, "weight_decay": 0.01, "layer_decay": 0.95, "min_lr": 0.0, "decoder_channels": 768})


@pytest.mark.slow
def test_debug_pretraining_trains_and_validates(generated_subsets, tmp_path):
    assert_debug_experiment_runs("sep_vit_adapter_b_debug", tmp_path, generated_subsets)
