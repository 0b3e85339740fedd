"""load_official with the zoo backbones written on their own branches (ViTAEv2-S, InternImage-T,
ViT-Adapter-B, ViT-B + RVSA): a file in the official pre-training / fine-tuning layout, built from
a samrs model at reduced size (official encoder keys, mmseg's UPerHead names, semseghead_k), loads
strictly and gives back that model's logits. The backbones' own official arithmetic is checked
against golden values in their test files; this checks the wiring of the loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from samrs.models.official import _rename_upernet, build_official, load_official

FIXTURES = Path(__file__).parent / "official_fixtures"

# reduced sizes of the _debug model configs
ZOO = {
    "vitaev2_s": dict(embed_dims=[16, 16, 32, 64], token_dims=[16, 32, 64, 128], NC_depth=[1, 1, 1, 1],
                      NC_heads=[1, 1, 2, 2], RC_heads=[1, 1, 1, 2], NC_group=[1, 4, 8, 16], RC_group=[1, 4, 8, 16]),
    "internimage_t": dict(channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8]),
    "vit_adapter_b": dict(embed_dim=48, depth=4, num_heads=2, deform_num_heads=2, conv_inplane=8,
                          interaction_indexes=[[0, 0], [1, 1], [2, 2], [3, 3]]),
    "vit_b_rvsa": dict(embed_dim=48, depth=4, num_heads=2, block_indices=[0, 1, 2, 3], window_size=2),
}


def official_decoder_names() -> dict[str, str]:
    """samrs UperNetDecoder key -> mmseg UPerHead key, from the official key list of a fixture."""
    keys = json.loads((FIXTURES / "official_swin_t_upernet.json").read_text())["sep"]["keys"]
    names = [k.removeprefix("decoder.") for k in keys if k.startswith("decoder.")]
    return {_rename_upernet(k): k for k in names}


def official_layout(net: torch.nn.Module, backbone: str, kwargs: dict, heads: list[str]) -> dict[str, torch.Tensor]:
    """`net`'s weights as the official framework's state_dict (random encoder tensors go in first)."""
    full = timm.create_model(backbone, **kwargs)
    for p in full.parameters():
        torch.nn.init.normal_(p, std=0.05)
    net.backbone.load_weights(full.state_dict(), "a random full model")
    state = {f"encoder.{k}": v for k, v in full.state_dict().items()}
    to_official = official_decoder_names()
    state.update({f"decoder.{to_official[k]}": v for k, v in net.decoder.state_dict().items()})
    for head, subset in zip(heads, net.heads):
        state.update({f"{head}.1.{k.split('.')[-1]}": v for k, v in net.heads[subset].state_dict().items()})
    return state


@pytest.mark.parametrize("backbone", list(ZOO))
@pytest.mark.parametrize("layout", ["sep", "finetune"])
def test_load_official_takes_the_zoo_backbones(backbone, layout, tmp_path):
    torch.manual_seed(0)
    kwargs = ZOO[backbone]
    heads = {"sota": 3, "sior": 4, "fast": 5} if layout == "sep" else {"potsdam": 5}
    names = ["semseghead_1", "semseghead_2", "semseghead_3"] if layout == "sep" else ["semseghead"]
    width = timm.create_model(backbone, features_only=True, **kwargs).feature_info.channels()[1]
    net = build_official(backbone, "upernet", heads, {"channels": width}, **kwargs).eval()
    state = official_layout(net, backbone, kwargs, names)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "official.pth")

    loaded = load_official(tmp_path / "official.pth", backbone, "upernet", **kwargs)
    assert list(loaded.heads) == list(heads)
    assert loaded.decoder.channels == width  # the official width comes from the file
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for subset in heads:
            torch.testing.assert_close(loaded(x, subset), net(x, subset), rtol=1e-5, atol=1e-5)


def test_load_official_names_a_missing_zoo_encoder_key(tmp_path):
    kwargs = ZOO["internimage_t"]
    net = build_official("internimage_t", "upernet", {"potsdam": 5}, {"channels": 32}, **kwargs).eval()
    state = official_layout(net, "internimage_t", kwargs, ["semseghead"])
    del state["encoder.levels.0.blocks.0.dcn.offset.weight"]
    torch.save({"state_dict": state}, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match="levels.0.blocks.0.dcn.offset.weight"):
        load_official(tmp_path / "cut.pth", "internimage_t", "upernet", **kwargs)
