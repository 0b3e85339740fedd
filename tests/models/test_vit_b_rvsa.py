"""vit_b_rvsa: the official SAMRS ViT-B + RVSA (with its neck) as a timm model (keys, outputs, MAE
weights, lr groups)."""

from __future__ import annotations

import argparse

import pytest
import timm
import torch
from official_helpers import (assert_debug_experiment_runs, assert_experiments_configured,
                              assert_loads_samrs_checkpoint, assert_official_keys, assert_official_model_outputs,
                              backbone_lr_groups, fill_like_official, load_fixture, official_input)

from samrs.models import TimmBackbone
from samrs.models.backbones.vit_rvsa import checkpoint_filter_fn, relative_position_index

FIXTURE = load_fixture("vit_b_rvsa")
SMALL = FIXTURE["reduced"]["samrs_kwargs"]  # 4 blocks of 96 channels (the third global), all into the neck


@pytest.fixture(scope="module")
def small() -> torch.nn.Module:
    return fill_like_official(timm.create_model("vit_b_rvsa", **SMALL)).eval()


def test_full_size_keys_and_shapes_are_the_official_ones():
    with torch.device("meta"):
        model = timm.create_model("vit_b_rvsa")
    assert_official_keys(model, FIXTURE)
    blocks = {k.split(".")[1] for k, _ in FIXTURE["keys"] if ".sampling_offsets." in k}
    assert blocks == {"0", "1", "3", "4", "6", "7", "9", "10"}  # every third block attends globally


@pytest.mark.parametrize("fan_in", [False, True])
def test_outputs_are_the_official_models(fan_in):
    """128 px: 8 x 8 patches, padded to 2 x 2 windows of 7 (1 row/column before, 5 after)."""
    assert_official_model_outputs("vit_b_rvsa", FIXTURE, fan_in)


def test_relative_position_index_is_swins():
    index = relative_position_index(2)
    # (dy + 1) * 3 + (dx + 1) for token pairs of a 2 x 2 window, row-major
    assert index.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]


def test_features_only_backbone_gives_the_four_levels(small):
    backbone = TimmBackbone("vit_b_rvsa", **SMALL)
    backbone.model.model.load_state_dict(small.state_dict())
    assert backbone.channels == [96] * 4 and backbone.strides == [4, 8, 16, 32]
    x = official_input(112, batch=2)
    with torch.no_grad():
        feats = backbone.eval()(x)
        direct = small.forward_intermediates(x, intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(2, 96, 28, 28), (2, 96, 14, 14), (2, 96, 7, 7), (2, 96, 3, 3)]
    assert all(torch.equal(a, b) for a, b in zip(feats, direct))
    backbone.train()
    sum(f.square().mean() for f in backbone(x)).backward()
    named = dict(backbone.named_parameters())
    assert named["model.model.blocks.0.attn.sampling_angles.2.weight"].grad.abs().sum() > 0
    assert named["model.model.norm.weight"].grad is None  # the official forward does not use it


def test_an_image_smaller_than_a_window_is_an_error(small):
    with pytest.raises(ValueError, match="at least 7 patches per side"):
        small(torch.zeros(1, 3, 96, 128))


def mae_layout(embed_dim: int, depth: int, num_heads: int) -> dict[str, torch.Tensor]:
    """The "model" of an MAE pre-training checkpoint (vit-b-checkpoint-1599.pth): the ViT encoder with
    class token, fixed sin-cos position embedding and final norm, then MAE's mask token and decoder."""
    vit = timm.create_model("vit_base_patch16_224", embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                            num_classes=0)
    state = dict(vit.state_dict())
    decoder_dim = 32
    state.update({
        "mask_token": torch.zeros(1, 1, decoder_dim),
        "decoder_embed.weight": torch.zeros(decoder_dim, embed_dim),
        "decoder_embed.bias": torch.zeros(decoder_dim),
        "decoder_pos_embed": torch.zeros(1, 197, decoder_dim),
        "decoder_blocks.0.attn.qkv.weight": torch.zeros(3 * decoder_dim, decoder_dim),
        "decoder_norm.weight": torch.ones(decoder_dim),
        "decoder_pred.weight": torch.zeros(16 * 16 * 3, decoder_dim),
    })
    return state


def test_mae_checkpoint_loads_strictly_through_the_filter(tmp_path):
    mae = mae_layout(96, 4, 4)
    path = tmp_path / "vit-b-checkpoint-1599.pth"
    torch.save({"model": mae, "optimizer": {}, "epoch": 1599, "scaler": {},
                "args": argparse.Namespace(model="mae_vit_base_patch16", norm_pix_loss=True)}, path)
    backbone = TimmBackbone("vit_b_rvsa", checkpoint=str(path), **SMALL)
    loaded = backbone.model.model.state_dict()
    for key in ("patch_embed.proj.weight", "blocks.1.attn.qkv.weight", "blocks.2.attn.proj.bias", "norm.weight"):
        assert torch.equal(loaded[key], mae[key]), key
    # the RVSA parts keep the official initialisation: zero relative position terms, Swin's index
    assert torch.equal(loaded["blocks.0.attn.rel_pos_h"], torch.zeros(13, 24))
    assert torch.equal(loaded["blocks.3.attn.relative_position_index"], relative_position_index(7))


def test_filter_drops_the_patch_embedding_for_other_band_counts():
    model = timm.create_model("vit_b_rvsa", in_chans=4, **SMALL)
    state = checkpoint_filter_fn({"model": mae_layout(96, 4, 4)}, model)
    assert state["patch_embed.proj.weight"].shape == (96, 4, 16, 16)
    assert torch.equal(state["patch_embed.proj.weight"], model.state_dict()["patch_embed.proj.weight"])
    model.load_state_dict(state, strict=True)


def test_filter_is_strict_about_everything_else(tmp_path):
    beit = dict(mae_layout(96, 4, 4), **{"blocks.0.attn.q_bias": torch.zeros(96)})
    torch.save({"model": beit}, tmp_path / "beit_like.pth")
    with pytest.raises(ValueError, match="unexpected blocks.0.attn.q_bias"):
        TimmBackbone("vit_b_rvsa", checkpoint=str(tmp_path / "beit_like.pth"), **SMALL)
    torch.save({"model": mae_layout(192, 4, 4)}, tmp_path / "vit_wider.pth")
    with pytest.raises(ValueError, match="other shapes"):
        TimmBackbone("vit_b_rvsa", checkpoint=str(tmp_path / "vit_wider.pth"), **SMALL)


def test_official_samrs_checkpoint_loads_whole(small, tmp_path):
    assert_loads_samrs_checkpoint("vit_b_rvsa", SMALL, small, tmp_path / "sep.pth")


def test_layer_decay_scales_blocks_and_leaves_the_neck_at_full_lr():
    group = backbone_lr_groups("vit_b_rvsa", SMALL, weight_decay=0.05, no_decay_bias=True,
                               no_decay_names=["pos_embed"], layer_decay=0.9)
    # the official ViT constructor: patch embedding layer 0, block i layer i + 1, all else layer depth + 1
    assert group["patch_embed.proj.weight"]["lr"] == pytest.approx(0.9**5)
    assert group["blocks.0.attn.sampling_offsets.2.weight"]["lr"] == pytest.approx(0.9**4)
    assert group["blocks.3.attn.qkv.weight"]["lr"] == pytest.approx(0.9)
    for name in ("fpn1.0.weight", "fpn1.1.ln.weight", "fpn2.0.weight", "norm.weight"):
        assert group[name]["lr"] == pytest.approx(1.0), name
    # decayed like any 2-d weight, as officially: the relative position terms
    assert group["blocks.0.attn.rel_pos_h"]["weight_decay"] == 0.05
    assert group["blocks.0.attn.relative_position_bias_table"]["weight_decay"] == 0.05


def test_experiments_have_the_official_settings():
    assert_experiments_configured(
        "vit_b_rvsa", {"name": "vit_b_rvsa", "drop_path_rate": 0.1},
        {"lr": 6e-5, "weight_decay": 0.05, "layer_decay": 0.9, "min_lr": 0.0, "decoder_channels": 768})


@pytest.mark.slow
def test_debug_pretraining_trains_and_validates(generated_subsets, tmp_path):
    assert_debug_experiment_runs("sep_vit_b_rvsa_debug", tmp_path, generated_subsets)
