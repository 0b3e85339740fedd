"""The multi-head Mask R-CNN: losses and detections, per-subset predictors behind shared parts,
images without instances, and its starts (SEP export, official SAMRS file)."""

from __future__ import annotations

import logging

import pytest
import torch

from samrs.models import MultiHeadSegmentor, TimmBackbone, UperNetDecoder, check_input_sizes, export_pretrained
from samrs.models.maskrcnn import MultiHeadMaskRCNN, load_start

HEADS = {"sota": 18, "sior": 20}
SMALL = {"fpn_channels": 32, "anchor_sizes": (8, 16, 32, 64, 128), "representation_size": 64, "mask_layers": (32,),
         "mask_dim_reduced": 32, "rpn": {"pre_nms_top_n": {"training": 100, "testing": 100},
                                        "post_nms_top_n": {"training": 100, "testing": 50}}}


def backbone(**kwargs) -> TimmBackbone:
    return TimmBackbone("resnet18", **kwargs)


def maskrcnn(**kwargs) -> MultiHeadMaskRCNN:
    torch.manual_seed(0)
    return MultiHeadMaskRCNN(backbone(), HEADS, **{**SMALL, **kwargs})


def target(boxes: list[list[int]], labels: list[int], size: int = 64) -> dict[str, torch.Tensor]:
    masks = torch.zeros(len(boxes), size, size, dtype=torch.uint8)
    for m, (x0, y0, x1, y1) in zip(masks, boxes):
        m[y0:y1, x0:x1] = 1
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": masks, "iscrowd": torch.zeros(len(boxes), dtype=torch.int64)}


def test_training_gives_torchvisions_losses_and_only_the_subsets_predictors_learn():
    net = maskrcnn().train()
    losses = net(torch.randn(2, 3, 64, 64), "sior", [target([[4, 4, 30, 20]], [19]), target([[10, 30, 40, 60]], [0])])
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = {k: p.grad is not None and p.grad.abs().sum() > 0 for k, p in net.named_parameters()}
    assert grads["roi_heads.box_predictor.sior.cls_score.weight"] and grads["roi_heads.mask_predictor.sior.mask_fcn_logits.weight"]
    assert not any(v for k, v in grads.items() if ".sota." in k)
    assert grads["backbone.model.conv1.weight"] and grads["fpn.layer_blocks.0.0.weight"]
    assert grads["roi_heads.box_head.fc6.weight"] and grads["roi_heads.mask_head.0.0.weight"]
    assert net.num_classes == HEADS


def test_images_without_instances_and_crowd_regions_train():
    net = maskrcnn().train()
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros(0, 64, 64, dtype=torch.uint8), "iscrowd": torch.zeros(0, dtype=torch.int64)}
    crowd = {**target([[4, 4, 30, 20]], [3]), "iscrowd": torch.ones(1, dtype=torch.int64)}
    losses = net(torch.randn(2, 3, 64, 64), "sota", [empty, crowd])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_mask"] == 0 and losses["loss_box_reg"] == 0  # nothing to match: no positives


def test_detections_are_class_ids_with_boolean_masks_at_the_image_size():
    net = maskrcnn(roi={"score_thresh": 0.0, "detections_per_img": 30}).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 70, 45), "sota")  # not multiples of 32: padded, then cut back
    for det in out:
        n = len(det["boxes"])
        assert n > 0 and det["masks"].shape == (n, 70, 45) and det["masks"].dtype == torch.bool
        assert det["scores"].shape == (n,) and ((det["labels"] >= 0) & (det["labels"] < 18)).all()
        assert (det["boxes"][:, 2] <= 45).all() and (det["boxes"][:, 3] <= 70).all()
    check_input_sizes(net, {"data.train_transform.crop_size": 96})
    with pytest.raises(KeyError, match="no head for subset 'fast'"):
        net(torch.randn(1, 3, 64, 64), "fast")


def test_starts_from_a_sep_export_load_the_backbone_and_say_the_decoder_does_not_apply(tmp_path, caplog):
    torch.manual_seed(1)
    sep = MultiHeadSegmentor(backbone(), lambda in_channels: UperNetDecoder(in_channels, channels=32), {"sota": 18})
    export_pretrained(sep.state_dict(), tmp_path / "pretrained.pt", {"backbone": "resnet18"})
    with caplog.at_level(logging.INFO, logger="samrs.models.maskrcnn"):
        net = maskrcnn(pretrained=str(tmp_path / "pretrained.pt"))
    for k, v in sep.backbone.state_dict().items():
        torch.testing.assert_close(net.backbone.state_dict()[k], v)
    assert "semantic segmentation decoder" in caplog.text and "only backbone loads" in caplog.text
    with pytest.raises(ValueError, match=r"backbone resnet18\) does not fit this model's backbone: unexpected .*layer1\.1"):
        MultiHeadMaskRCNN(TimmBackbone("resnet18", layers=[1, 1, 1, 1]), HEADS, **SMALL, pretrained=str(tmp_path / "pretrained.pt"))


def test_an_instance_checkpoint_starts_the_shared_heads_too_but_never_the_predictors(tmp_path):
    trained = maskrcnn()
    for p in trained.parameters():
        torch.nn.init.normal_(p)
    torch.save(trained.state_dict(), tmp_path / "instance.pt")
    torch.manual_seed(5)
    net = MultiHeadMaskRCNN(backbone(), {"isaid": 15}, **SMALL)
    assert load_start(net, str(tmp_path / "instance.pt"), ["backbone", "fpn", "rpn", "roi_heads"]) == \
        ["backbone", "fpn", "rpn", "roi_heads"]
    own = net.state_dict()
    for k, v in trained.state_dict().items():
        if "_predictor." not in k:
            torch.testing.assert_close(own[k], v)
    assert not torch.equal(own["roi_heads.box_predictor.isaid.bbox_pred.bias"][:4],
                           trained.state_dict()["roi_heads.box_predictor.sota.bbox_pred.bias"][:4])
    with pytest.raises(ValueError, match=r"pretrained_parts \['decoder'\]"):
        load_start(net, str(tmp_path / "instance.pt"), ["decoder"])


def test_an_official_samrs_file_starts_the_backbone_from_its_encoder(tmp_path):
    import timm

    full = timm.create_model("resnet18")
    official = {f"module.encoder.{k}": torch.randn_like(v) if v.is_floating_point() else v
                for k, v in full.state_dict().items() if not k.startswith("fc.")}
    official.update({"module.decoder.fpn_bottleneck.conv.weight": torch.zeros(8, 8, 3, 3),
                     "module.semseghead_1.1.weight": torch.zeros(18, 8, 1, 1)})
    torch.save({"state_dict": official, "epoch": 3}, tmp_path / "official.pth")
    net = maskrcnn(pretrained=str(tmp_path / "official.pth"))
    for k, v in net.backbone.model.state_dict().items():
        torch.testing.assert_close(v, official[f"module.encoder.{k}"])


def test_norm_eval_keeps_the_backbones_batchnorm_statistics():
    net = maskrcnn(norm_eval=True).train()
    before = net.backbone.model.bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64), "sota", [target([[4, 4, 30, 20]], [3])] * 2)
    assert torch.equal(net.backbone.model.bn1.running_mean, before) and not net.backbone.model.bn1.training
    assert net.roi_heads.training and net.fpn.training
