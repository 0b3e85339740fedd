"""Official SAMRS weight files in samrs: the backbones resnet50 / swin_t / vit_b, the decoders and
`load_official`, checked against golden fixtures written from the official modules (outside this
repository, weights filled by official_helpers' rule): key lists, feature levels and logits."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from official_helpers import assert_matches, fill_like_official, fill_tensor, key_shapes, official_input

from samrs.evaluate import evaluate
from samrs.models import MultiHeadSegmentor, TimmBackbone, UNetDecoder, UperNetDecoder, load_pretrained
from samrs.models.backbone import convert_weights
from samrs.models.backbones.swin_t import relative_position_index
from samrs.models.official import load_official
from samrs.utils.hydra import config_dir

FIXTURES = Path(__file__).parent / "official_fixtures"
SEGMENTORS = ["resnet50_upernet", "resnet50_unet", "swin_t_upernet", "vit_b_upernet"]


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def official_tensor(key: str, shape: list[int], dtype: str) -> torch.Tensor:
    """A tensor of an official file as the fixtures' fill rule gives it; integer buffers as the
    official model builds them (BatchNorm counters 0, Swin's relative position index)."""
    if dtype.startswith("int"):
        if key.endswith("relative_position_index"):
            return relative_position_index(int(round(shape[0] ** 0.5)))
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    return fill_tensor(key, torch.zeros(shape))


def official_file(path: Path, keys: dict[str, list], wrap=lambda state: {"state_dict": state, "epoch": 7}) -> Path:
    """Write an official-layout weight file holding `keys` (name -> [shape, dtype]) filled by the rule."""
    torch.save(wrap({k: official_tensor(k, shape, dtype) for k, (shape, dtype) in keys.items()}), path)
    return path


@pytest.mark.parametrize("name", ["resnet50", "swin_t", "vit_b"])
def test_backbone_keys_are_the_official_encoders(name):
    model = timm.create_model(name)
    ours = {k: v for k, v in key_shapes(model).items() if not k.startswith("fc.")}  # timm's ResNet classifier
    assert ours == fixture(name)["keys"]


@pytest.mark.parametrize("name", ["resnet50", "swin_t", "vit_b"])
def test_backbone_levels_equal_the_official_ones(name):
    spec = fixture(name)["reduced"]
    full = fill_like_official(timm.create_model(name, **spec["samrs_kwargs"]))
    backbone = TimmBackbone(name, **spec["samrs_kwargs"]).eval()
    backbone.load_weights(full.state_dict(), "the filled model")
    with torch.no_grad():
        levels = backbone(official_input(spec["input"]))
    assert len(levels) == 4
    for i, (level, expected) in enumerate(zip(levels, spec["levels"])):
        assert_matches(level, expected, name=f"{name} level {i}")


@pytest.mark.parametrize("layout", ["sep", "finetune"])
@pytest.mark.parametrize("segmentor", SEGMENTORS)
def test_load_official_gives_the_official_logits(segmentor, layout, tmp_path):
    spec = fixture(f"official_{segmentor}")[layout]
    backbone, decoder = segmentor.rsplit("_", 1)
    net = load_official(official_file(tmp_path / "model.pth", spec["keys"]), backbone, decoder, **spec["samrs_kwargs"])
    assert not net.training
    assert list(net.heads) == (["sota", "sior", "fast"] if layout == "sep" else ["potsdam"])
    with torch.no_grad():
        for (head, expected), subset in zip(spec["logits"].items(), net.heads):
            assert_matches(net(official_input(spec["input"]), subset), expected, name=f"{segmentor} {head}")


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"model": s},
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}},  # DistributedDataParallel
    lambda s: {"state_dict": {k.replace(".", ".module.", 1): v for k, v in s.items()}},  # DataParallel parts
], ids=["plain", "model", "module", "part_module"])
def test_load_official_reads_every_published_wrapping(wrap, tmp_path):
    spec = fixture("official_swin_t_upernet")["sep"]
    net = load_official(official_file(tmp_path / "m.pth", spec["keys"], wrap), "swint", "upernet",  # the scripts' name
                        **spec["samrs_kwargs"])
    with torch.no_grad():
        assert_matches(net(official_input(spec["input"]), "sior"), spec["logits"]["semseghead_2"])


def test_load_official_names_every_key_that_does_not_fit(tmp_path):
    keys = dict(fixture("official_swin_t_upernet")["sep"]["keys"])
    kwargs = fixture("official_swin_t_upernet")["sep"]["samrs_kwargs"]
    del keys["decoder.fpn_bottleneck.conv.weight"]
    with pytest.raises(ValueError, match=r"missing decoder\.fuse\.0\.weight"):
        load_official(official_file(tmp_path / "a.pth", keys), "swin_t", "upernet", **kwargs)
    keys["decoder.fpn_bottleneck.conv.weight"] = [[48, 192, 3, 3], "float32"]
    keys["encoder.extra.weight"] = [[3], "float32"]
    with pytest.raises(ValueError, match=r"unexpected extra\.weight"):
        load_official(official_file(tmp_path / "b.pth", keys), "swin_t", "upernet", **kwargs)
    with pytest.raises(ValueError, match=r"--backbone resnet50 .*missing"):
        load_official(tmp_path / "a.pth", "resnet50", "upernet")
    with pytest.raises(ValueError, match="unknown official backbone 'vit_l'"):
        load_official(tmp_path / "a.pth", "vit_l", "upernet")


def test_fine_tuning_starts_from_an_official_pretraining(tmp_path):
    """start=official_sep: the file's encoder and decoder, a new classifier (model.net.pretrained=FILE)."""
    spec = fixture("official_swin_t_upernet")["sep"]
    path = official_file(tmp_path / "sep.pth", spec["keys"])
    official = load_official(path, "swin_t", "upernet", **spec["samrs_kwargs"])
    fine = MultiHeadSegmentor(TimmBackbone("swin_t", **spec["samrs_kwargs"]), partial(UperNetDecoder), {"potsdam": 5},
                              pretrained=str(path))
    same = {k: v for k, v in official.state_dict().items() if not k.startswith("heads.")}
    for k, v in same.items():
        torch.testing.assert_close(fine.state_dict()[k], v, msg=k)
    assert fine.heads.potsdam[1].weight.shape == (5, 48, 1, 1)
    with pytest.raises(ValueError, match="parts are backbone and decoder"):
        load_pretrained(fine, path, parts=["heads"])


def test_decoders_have_the_official_width_and_classifier():
    backbone = TimmBackbone("resnet50", layers=[1, 1, 1, 1], base_width=16)
    upernet = MultiHeadSegmentor(backbone, partial(UperNetDecoder), {"sota": 18})
    assert upernet.decoder.channels == 512  # ResNet-50's second level
    assert isinstance(upernet.heads.sota[0], torch.nn.Dropout2d) and upernet.heads.sota[0].p == 0.1
    assert upernet.heads.sota[1].kernel_size == (1, 1)
    unet = MultiHeadSegmentor(backbone, partial(UNetDecoder, decoder_channels=(32, 16, 16, 8)), {"sota": 18})
    assert unet.heads.sota[0].p == 0.0 and unet.heads.sota[1].kernel_size == (3, 3)
    mmseg = MultiHeadSegmentor(backbone, partial(UperNetDecoder, channels=512), {"sota": 18}, dropout=0.0,
                               head_kernel_size=3)
    assert mmseg.heads.sota[0].p == 0.0 and mmseg.heads.sota[1].kernel_size == (3, 3)


def test_imagenet_tags_of_the_paper_are_timm_weights():
    for tag in ("resnet50.tv_in1k", "swin_tiny_patch4_window7_224.ms_in1k", "deit_base_patch16_224.fb_in1k"):
        assert timm.list_pretrained(tag) == [tag]


@pytest.mark.parametrize("source,target,small", [
    ("swin_tiny_patch4_window7_224", "swin_t", dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))),
    ("deit_base_patch16_224", "vit_b", dict(embed_dim=48, depth=2, num_heads=2)),
])
def test_timm_imagenet_layouts_convert_into_the_official_backbones(source, target, small):
    """What start=imp downloads (timm's layout of Microsoft's Swin-T, of DeiT-B) loads strictly."""
    state = timm.create_model(source, **small).state_dict()
    out = convert_weights(target, state, small, source)
    if target == "swin_t":  # timm keeps stage 0's patch merging at the start of stage 1
        torch.testing.assert_close(out["layers.0.downsample.reduction.weight"], state["layers.1.downsample.reduction.weight"])
        assert torch.equal(out["norm2.weight"], torch.ones(96))  # level norms: not in classification files
    else:  # DeiT's class token entry of the position table goes, the 14 x 14 grid stays
        torch.testing.assert_close(out["pos_embed"], state["pos_embed"][:, 1:])
        torch.testing.assert_close(out["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"])


def test_vit_b_converts_mae_and_beit_files_as_the_official_loader(tmp_path):
    small = dict(embed_dim=48, depth=2, num_heads=2)
    mae = timm.create_model("vit_base_patch16_224", **small).state_dict()
    mae.update({"mask_token": torch.zeros(1, 1, 48), "decoder_embed.weight": torch.zeros(8, 48)})
    torch.save({"model": mae}, tmp_path / "mae.pth")
    backbone = TimmBackbone("vit_b", img_size=128, checkpoint=str(tmp_path / "mae.pth"), **small)
    grid = mae["pos_embed"][:, 1:].reshape(1, 14, 14, 48).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(grid, size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(backbone.model.model.pos_embed, resized.permute(0, 2, 3, 1).reshape(1, 64, 48))
    beit = timm.create_model("beit_base_patch16_224", **small).state_dict()
    assert any(k.endswith("attn.q_bias") for k in beit)
    out = convert_weights("vit_b", {"model": beit}, small, "beit")
    torch.testing.assert_close(out["blocks.1.attn.qkv.weight"], beit["blocks.1.attn.qkv.weight"])
    assert torch.equal(out["blocks.1.attn.qkv.bias"], torch.zeros(144))  # BEiT's q/v biases have no place
    mae["blocks.0.attn.unknown"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected blocks\.0\.attn\.unknown"):
        convert_weights("vit_b", mae, small, "mae.pth")


@pytest.mark.slow
def test_evaluate_scores_an_official_fine_tuned_model(tmp_path):
    """python -m samrs.evaluate ckpt_path=FILE model=... data=...: a released fine-tuned model, scored."""
    spec = fixture("official_swin_t_upernet")["finetune"]
    path = official_file(tmp_path / "best_swint_upernet_finetune_model.pth", spec["keys"])
    overrides = [f"ckpt_path={path}", "model=swin_t_upernet_debug", "model.net.backbone.depths=[1,2,1,2]",
                 "model.net.decoder.channels=null", "data=potsdam_debug", f"paths.data_dir={tmp_path / 'data'}",
                 f"paths.output_dir={tmp_path / 'out'}", "trainer=cpu"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("evaluate", overrides=overrides)
    scores = evaluate(cfg)
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(report["scores"]) == ["potsdam"] and report["scores"]["potsdam"]["OA"] == scores["potsdam"]["OA"]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        wrong = compose("evaluate", overrides=[*overrides[:1], "model=r50_upernet_debug", *overrides[4:]])
    with pytest.raises(ValueError, match="the official encoder does not fit timm model resnet50"):
        evaluate(wrong)


def test_backbone_files_with_prefixes_load(tmp_path):
    """An mmseg-style segmentation checkpoint (backbone.* beside decode_head.*) or a DataParallel one."""
    small = dict(channels=[16, 32, 64, 128])
    source = timm.create_model("resnet50", **small).state_dict()
    torch.save({"state_dict": {**{f"backbone.{k}": v for k, v in source.items()}, "decode_head.conv_seg.weight":
                               torch.zeros(2)}}, tmp_path / "seg.pth")
    torch.save({f"module.{k}": v for k, v in source.items()}, tmp_path / "dp.pth")
    for name in ("seg.pth", "dp.pth"):
        backbone = TimmBackbone("resnet50", checkpoint=str(tmp_path / name), **small)
        torch.testing.assert_close(backbone.model.layer2[0].conv1.weight, source["layer2.0.conv1.weight"])


def test_vit_b_layer_ids_for_layer_decay():
    ids = TimmBackbone("vit_b", embed_dim=48, depth=2, num_heads=2).layer_ids()
    assert ids["model.model.pos_embed"] == ids["model.model.patch_embed.proj.weight"] == 0
    assert ids["model.model.blocks.0.attn.qkv.weight"] == 1 and ids["model.model.blocks.1.mlp.fc2.bias"] == 2
    assert ids["model.model.norm.weight"] == ids["model.model.fpn1.0.weight"] == 2  # with the last block


def test_swin_t_reads_microsoft_classification_files():
    """Microsoft's / RSP's Swin-T layout: patch merging in its own stage, a final norm and classifier,
    saved shift masks; bias tables of another window are resized as the official loader does."""
    small = dict(embed_dim=24, depths=(1, 2, 1, 2), num_heads=(1, 1, 2, 2))
    own = timm.create_model("swin_t", **small).state_dict()
    state = {k: v for k, v in own.items() if not k.startswith("norm")}
    state.update({"norm.weight": torch.ones(192), "head.weight": torch.zeros(1000, 192),
                  "layers.1.blocks.1.attn_mask": torch.zeros(4, 49, 49)})
    state["layers.2.blocks.0.attn.relative_position_bias_table"] = torch.randn(23 * 23, 2)  # window 12
    out = convert_weights("swin_t", {"model": state}, small, "swin_tiny_patch4_window7_224.pth")
    assert out["layers.2.blocks.0.attn.relative_position_bias_table"].shape == (169, 2)
    assert {k for k in out if k.startswith("norm")} == {f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    torch.testing.assert_close(out["layers.0.downsample.reduction.weight"], own["layers.0.downsample.reduction.weight"])
