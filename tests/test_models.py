"""samrs.models: backbones, neck, decoders, the multi-head segmentor, weight files."""

from __future__ import annotations

from functools import partial

import pytest
import timm
import torch

from samrs.models import (
    FCNHead,
    MultiHeadSegmentor,
    MultiLevelNeck,
    TimmBackbone,
    UNetDecoder,
    UperNetDecoder,
    check_input_sizes,
    export_pretrained,
    load_pretrained,
)

HEADS = {"sota": 18, "sior": 20, "fast": 37}
# Tiny stand-ins of the paper's backbones: same timm families, a fraction of the width and depth.
TINY = {
    "resnet50": dict(layers=[1, 1, 1, 1], base_width=16),
    "swin_tiny_patch4_window7_224": dict(embed_dim=24, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                                         dynamic_img_size=True),
    "convnext_tiny": dict(dims=(16, 32, 64, 128), depths=(1, 1, 1, 1)),
}
TINY_VIT = dict(embed_dim=48, depth=4, num_heads=2, dynamic_img_size=True, out_indices=(0, 1, 2, 3))


def tiny_backbone(name: str = "resnet50", **kwargs) -> TimmBackbone:
    return TimmBackbone(name, **{**TINY[name], **kwargs})


def segmentor(backbone: TimmBackbone | None = None, heads=HEADS, **kwargs) -> MultiHeadSegmentor:
    return MultiHeadSegmentor(backbone or tiny_backbone(), partial(UperNetDecoder, channels=16), heads, **kwargs)


@pytest.mark.parametrize("name", list(TINY))
def test_backbone_gives_four_nchw_levels(name):
    backbone = tiny_backbone(name)
    feats = backbone(torch.zeros(1, 3, 64, 64))
    assert backbone.strides == [4, 8, 16, 32]
    assert [tuple(f.shape) for f in feats] == [(1, c, 64 // s, 64 // s) for c, s in zip(backbone.channels, backbone.strides)]


def test_vit_with_neck_gives_strides_4_to_32():
    net = MultiHeadSegmentor(TimmBackbone("vit_base_patch16_224", **TINY_VIT), partial(UperNetDecoder, channels=16),
                             HEADS, neck=partial(MultiLevelNeck, scales=(4, 2, 1, 0.5)))
    assert net.neck.strides == [4, 8, 16, 32]
    feats = net.neck(net.features(torch.zeros(1, 3, 64, 64)))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]
    assert net(torch.zeros(2, 3, 64, 64), "fast").shape == (2, 37, 64, 64)


def test_decoders_output_shapes():
    backbone = tiny_backbone()
    feats = backbone(torch.zeros(2, 3, 64, 64))
    assert UperNetDecoder(backbone.channels)(feats).shape == (2, 512, 16, 16)  # mmseg's width by default
    assert UNetDecoder(backbone.channels, (32, 16, 16, 8))(feats).shape == (2, 8, 64, 64)  # full resolution
    assert FCNHead(backbone.channels, in_index=2, channels=24)(feats).shape == (2, 24, 4, 4)


def test_one_classifier_per_subset_and_logits_at_input_size():
    net = segmentor()
    assert net.num_classes == HEADS
    for subset, n in HEADS.items():
        assert net(torch.zeros(2, 3, 64, 64), subset).shape == (2, n, 64, 64)
    assert isinstance(net.heads["sota"][0], torch.nn.Dropout2d) and net.heads["sota"][0].p == 0.1
    assert net.heads["sota"][1].kernel_size == (1, 1)


def test_aux_head_gives_second_logits_per_subset():
    net = segmentor(aux_decoder=partial(FCNHead, channels=8))
    outs = net.forward_subsets({k: torch.zeros(2, 3, 64, 64) for k in HEADS})
    assert {k: (tuple(o["out"].shape), tuple(o["aux"].shape)) for k, o in outs.items()} == {
        k: ((2, n, 64, 64), (2, n, 64, 64)) for k, n in HEADS.items()
    }


def test_separate_decoders_switch():
    net = segmentor(shared_decoder=False, aux_decoder=partial(FCNHead, channels=8))
    keys = {k.split(".")[0] + "." + k.split(".")[1] for k in net.state_dict() if k.startswith(("decoders", "aux_decoders"))}
    assert keys == {f"{p}.{s}" for p in ("decoders", "aux_decoders") for s in HEADS}
    assert not hasattr(net, "decoder")
    assert net(torch.zeros(2, 3, 64, 64), "sior").shape == (2, 20, 64, 64)


def test_concatenated_backbone_pass_equals_one_pass_per_subset():
    torch.manual_seed(0)
    # LayerNorm backbone (no batch statistics), no randomness: both ways must give the same logits.
    net = segmentor(tiny_backbone("swin_tiny_patch4_window7_224", drop_path_rate=0.0), dropout=0.0).train()
    images = {k: torch.randn(2 + i, 3, 64, 64) for i, k in enumerate(HEADS)}
    net.concat_subsets = False
    looped = net.forward_subsets(images)
    net.concat_subsets = True
    joined = net.forward_subsets(images)
    for k in HEADS:
        torch.testing.assert_close(joined[k]["out"], looped[k]["out"], rtol=1e-4, atol=1e-5)


def test_auto_concatenation_only_without_batchnorm(monkeypatch):
    calls = []
    for backbone, expected in ((tiny_backbone("resnet50"), 3), (tiny_backbone("convnext_tiny"), 1)):
        net = segmentor(backbone).train()
        calls.clear()
        monkeypatch.setattr(net, "features", lambda x, f=net.features: calls.append(len(x)) or f(x))
        net.forward_subsets({k: torch.zeros(2, 3, 32, 32) for k in HEADS})
        assert len(calls) == expected


def test_input_size_check_names_the_key_and_the_stride():
    net = MultiHeadSegmentor(TimmBackbone("vit_base_patch16_224", **TINY_VIT), partial(UperNetDecoder, channels=8),
                             HEADS, neck=MultiLevelNeck)
    check_input_sizes(net, {"data.train_transform.crop_size": 64})
    with pytest.raises(ValueError, match=r"data.train_transform.crop_size=72: .*largest stride \(16\)"):
        check_input_sizes(net, {"data.train_transform.crop_size": 72})
    fixed = segmentor(TimmBackbone("swin_tiny_patch4_window7_224", **{**TINY["swin_tiny_patch4_window7_224"],
                                                                     "dynamic_img_size": False}))
    with pytest.raises(ValueError, match="dynamic_img_size=true"):
        check_input_sizes(fixed, {"data.val_transform.crop_size": 512})
    assert fixed.training  # the check leaves the mode as it was


def test_backbone_loads_a_local_weight_file(tmp_path):
    source = timm.create_model("resnet50", **TINY["resnet50"])
    torch.save({"state_dict": source.state_dict()}, tmp_path / "r50.pth")  # wrapped, with classifier keys
    backbone = tiny_backbone(checkpoint=str(tmp_path / "r50.pth"))
    torch.testing.assert_close(backbone.model.layer3[0].conv2.weight, source.layer3[0].conv2.weight)


def test_backbone_refuses_weights_of_another_architecture(tmp_path):
    torch.save(timm.create_model("resnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"r18.pth does not fit timm model resnet50: .*(missing|other shapes)"):
        tiny_backbone(checkpoint=str(tmp_path / "r18.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        tiny_backbone(checkpoint=str(tmp_path / "nope.pth"))


def test_exported_trunk_loads_into_a_finetuning_model(tmp_path, caplog):
    pre = segmentor(aux_decoder=partial(FCNHead, channels=8))
    export_pretrained(pre.state_dict(), tmp_path / "pretrained.pt", {"backbone": "resnet50"})
    fine = segmentor(heads={"potsdam": 6})
    head_before = fine.heads["potsdam"][1].weight.clone()
    with caplog.at_level("INFO", logger="samrs.models.weights"):
        assert load_pretrained(fine, tmp_path / "pretrained.pt") == ["backbone", "decoder"]
    assert "loaded backbone, decoder (" in caplog.text and str(tmp_path / "pretrained.pt") in caplog.text
    own = fine.state_dict()
    for k, v in pre.state_dict().items():
        if k.startswith(("backbone.", "decoder.")):
            torch.testing.assert_close(own[k], v)
    torch.testing.assert_close(fine.heads["potsdam"][1].weight, head_before)  # new classifier kept
    # the same through the constructor (what a fine-tuning config does)
    again = segmentor(heads={"potsdam": 6}, pretrained=str(tmp_path / "pretrained.pt"))
    torch.testing.assert_close(again.decoder.fuse[0].weight, pre.decoder.fuse[0].weight)


def test_load_pretrained_refuses_a_trunk_that_does_not_fit(tmp_path):
    export_pretrained(segmentor().state_dict(), tmp_path / "p.pt", {"backbone": "resnet50", "decoder": "UperNetDecoder"})
    wider = MultiHeadSegmentor(tiny_backbone(), partial(UperNetDecoder, channels=32), {"isaid": 15})
    with pytest.raises(ValueError, match=r"written for backbone resnet50.*other shapes.*decoder\."):
        load_pretrained(wider, tmp_path / "p.pt")
    # the backbone alone still fits
    assert load_pretrained(wider, tmp_path / "p.pt", parts=["backbone"]) == ["backbone"]


def test_per_subset_decoders_load_with_decoder_from(tmp_path):
    pre = segmentor(shared_decoder=False)
    export_pretrained(pre.state_dict(), tmp_path / "p.pt", {})
    fine = segmentor(heads={"isaid": 15})
    with pytest.raises(ValueError, match="decoder_from"):
        load_pretrained(fine, tmp_path / "p.pt")
    load_pretrained(fine, tmp_path / "p.pt", decoder_from="sior")
    torch.testing.assert_close(fine.decoder.fuse[0].weight, pre.decoders["sior"].fuse[0].weight)


@pytest.mark.parametrize(("max_epochs", "expected"), [(-1, "Epoch 3"), (12, "Epoch 3/11")])
def test_progress_bar_of_step_bounded_runs_shows_no_negative_epoch_total(max_epochs, expected):
    from types import SimpleNamespace

    from samrs.callbacks import StepAwareRichProgressBar

    bar = StepAwareRichProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(3).strip() == expected


def test_progress_bar_leaves_out_the_logger_version():
    from unittest import mock

    from lightning.pytorch.callbacks import RichProgressBar

    from samrs.callbacks import StepAwareRichProgressBar

    with mock.patch.object(RichProgressBar, "get_metrics", return_value={"v_num": 0, "train/loss": 1.5}):
        assert StepAwareRichProgressBar().get_metrics(None, None) == {"train/loss": 1.5}


def test_loss_of_a_batch_without_labelled_pixels_is_zero_not_nan():
    """Sparse objects on large tiles leave whole crops ignored (255): the step adds nothing to the
    loss instead of a NaN (F.cross_entropy's mean over no pixels); otherwise the loss is the mean."""
    import torch.nn.functional as F

    from samrs.tasks import SegmentationTask

    task = SegmentationTask(segmentor(), partial(torch.optim.AdamW, lr=1e-3))
    logits = torch.randn(2, 18, 8, 8, requires_grad=True)
    ignored = torch.full((2, 8, 8), 255)
    loss = task._loss(logits, ignored)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    mask = ignored.clone()
    mask[0, :4] = torch.randint(0, 18, (4, 8))
    assert torch.allclose(task._loss(logits, mask), F.cross_entropy(logits, mask, ignore_index=255))
