"""Mask2Former R-50, multi-head (samrs.models.mask2former): targets, semantic inference, the loss,
the official End_to_End layout and numbers (golden fixture written from the official modules), the
experiments."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from unittest import mock

import pytest
import torch
from hydra.utils import instantiate
from official_helpers import (assert_matches, fill_tensor, load_fixture, official_features, official_labels,
                              shape_keyed_rand)
from omegaconf import OmegaConf
from torch import nn

from samrs.models import TimmBackbone
from samrs.models.mask2former import OFFICIAL_CRITERION, Mask2FormerDecoder, Mask2FormerSegmentor, semantic_targets
from samrs.models.official_mask2former import (load_official_mask2former, official_decoder_kwargs,
                                                official_mask2former_state)
from samrs.tasks.optim import param_groups

FIXTURE = load_fixture("mask2former_r50")
REDUCED = FIXTURE["reduced"]
SMALL_DECODER = dict(hidden_dim=32, num_queries=5, encoder_layers=1, decoder_layers=2, num_heads=4,
                     encoder_feedforward_dim=32, dim_feedforward=32)


class Levels(nn.Module):
    """A stand-in backbone that returns fixed feature levels (the fixture's official inputs)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels, self.strides = channels, [4, 8, 16, 32]


def small_net(heads: dict[str, int], **criterion: float) -> Mask2FormerSegmentor:
    torch.manual_seed(0)
    return Mask2FormerSegmentor(TimmBackbone("resnet18"), partial(Mask2FormerDecoder, **SMALL_DECODER), heads,
                                criterion={"num_points": 64, **criterion})


def official_reduced_state() -> dict[str, torch.Tensor]:
    """The official reduced decoder and heads of the fixture, filled by the fill rule (fan in)."""
    return {k: fill_tensor(k, torch.zeros(shape), fan_in=True) for k, shape in REDUCED["reduced_keys"]}


def reduced_net() -> Mask2FormerSegmentor:
    net = Mask2FormerSegmentor(Levels(REDUCED["in_channels"]), partial(Mask2FormerDecoder, **REDUCED["decoder_kwargs"]),
                               REDUCED["heads"])
    net.load_state_dict(official_mask2former_state(official_reduced_state(), net, parts=("decoder", "heads")),
                        strict=True)
    return net.eval()


# --- targets and inference -------------------------------------------------------------------------

def test_semantic_targets_are_one_binary_mask_per_present_class_without_the_ignored_pixels():
    labels = torch.tensor([[[0, 2, 255], [2, 2, 255]], [[255, 255, 255], [255, 255, 255]]])
    classes, masks = semantic_targets(labels)
    assert classes[0].tolist() == [0, 2] and classes[1].numel() == 0
    assert masks[0].tolist() == [[[1, 0, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 0]]]  # 255 is 0 in every mask
    assert masks[1].shape == (0, 2, 3) and masks[0].dtype == torch.float32


def test_semantic_scores_are_class_probabilities_times_mask_probabilities_at_the_input_size():
    net = small_net({"a": 3}).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        scores = net(x, "a")
        out = net.decode(net.backbone(x), "a")
    assert scores.shape == (2, 3, 64, 96)
    cls, masks = out["class_logits"][-1], out["mask_logits"][-1]
    assert len(out["class_logits"]) == SMALL_DECODER["decoder_layers"] + 1 and masks.shape == (2, 5, 16, 24)
    up = nn.functional.interpolate(masks, size=(64, 96), mode="bilinear", align_corners=False).sigmoid()
    expected = torch.zeros(2, 3, 64, 96)
    for q in range(5):  # query by query: class probabilities without "no object" x mask probability
        probs = cls[:, q].softmax(-1)[:, :3]
        expected += probs[:, :, None, None] * up[:, q, None]
    assert torch.allclose(scores, expected, atol=1e-5)


# --- loss ------------------------------------------------------------------------------------------

def test_loss_has_class_mask_and_dice_terms_and_an_image_without_labels_only_a_class_term():
    net = small_net({"a": 3, "b": 4})
    out = net.forward_subsets({"a": torch.randn(2, 3, 64, 64), "b": torch.randn(1, 3, 64, 64)})
    terms = net.loss("a", out["a"], torch.randint(0, 3, (2, 64, 64)))
    assert set(terms) == {"loss_cls", "loss_mask", "loss_dice"} and all(v > 0 for v in terms.values())
    empty = net.loss("b", out["b"], torch.full((1, 64, 64), 255))
    assert empty["loss_mask"] == 0 and empty["loss_dice"] == 0 and empty["loss_cls"] > 0
    sum(empty.values()).backward()  # every query learns "no object"
    assert net.heads["b"].weight.grad.abs().sum() > 0 and net.heads["a"].weight.grad is None


def test_training_on_a_fixed_batch_lowers_the_loss():
    net = small_net({"a": 3})
    x, labels = torch.randn(2, 3, 64, 64), official_labels(2, 64, 64, 3)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(12):
        loss = sum(net.loss("a", net.forward_subsets({"a": x})["a"], labels).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_loss_settings_are_the_official_ones_and_checked():
    net = small_net({"a": 3})
    criterion = net.criteria["a"]
    assert OFFICIAL_CRITERION == {"class_weight": 2.0, "mask_weight": 5.0, "dice_weight": 5.0, "no_object_weight": 0.1,
                                  "num_points": 12544, "oversample_ratio": 3.0, "importance_sample_ratio": 0.75}
    assert criterion.empty_weight.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.1])
    assert not any(k.startswith("criteria") for k in net.state_dict())  # not weights: never in checkpoints
    with pytest.raises(ValueError, match=r"criterion: unknown keys \['mask_weigth'\]"):
        small_net({"a": 3}, mask_weigth=1.0)


# --- the official model ----------------------------------------------------------------------------

def test_official_full_size_keys_all_find_their_place():
    """The released IMP+SEP R-50 Mask2Former: the official encoder, decoder and 3 heads, 614 tensors."""
    with torch.device("meta"):
        net = Mask2FormerSegmentor(TimmBackbone("resnet50"), Mask2FormerDecoder, {"sota": 18, "sior": 20, "fast": 37})
        state = {k: torch.empty(shape) for k, shape in FIXTURE["keys"]}
    assert len(state) == 614 and sum(v.numel() for k, v in state.items() if k.startswith("decoder.")) == \
        sum(p.numel() for p in net.decoder.parameters())
    converted = official_mask2former_state(state, net)
    assert set(converted) == set(net.state_dict())  # the packed self-attention becomes q, k, v: 650 keys
    assert converted["decoder.transformer.decoder.layers.8.self_attn.q_proj.weight"].shape == (256, 256)
    assert converted["heads.fast.weight"].shape == (38, 256)


def test_a_missing_or_unknown_official_key_is_named():
    with torch.device("meta"):
        net = Mask2FormerSegmentor(TimmBackbone("resnet50"), Mask2FormerDecoder, {"sota": 18, "sior": 20, "fast": 37})
        state = {k: torch.empty(shape) for k, shape in FIXTURE["keys"]}
    missing = {k: v for k, v in state.items() if k != "decoder.query_feat.weight"}
    with pytest.raises(ValueError, match=r"missing decoder\.transformer\.queries_features\.weight"):
        official_mask2former_state(missing, net)
    with pytest.raises(ValueError, match=r"unexpected decoder\.pixel_decoder\.extra\.weight"):
        official_mask2former_state({**state, "decoder.pixel_decoder.extra.weight": torch.empty(1)}, net)
    with pytest.raises(ValueError, match=r"unexpected parts \['auxiliary'\]"):
        official_mask2former_state({**state, "auxiliary.weight": torch.empty(1)}, net)


def test_outputs_equal_the_official_models():
    """The official reduced decoder + 2 heads (fixture), filled by the rule: per-layer mask and class
    logits and the semantic scores of the official `predict`, on fixed feature levels."""
    net = reduced_net()
    feats = official_features(REDUCED["in_channels"], [tuple(s) for s in REDUCED["level_sizes"]], REDUCED["batch"])
    with torch.no_grad():
        for subset, expected in REDUCED["outputs"].items():
            out = net.decode(feats, subset)
            for i, (mask, record) in enumerate(zip(out["mask_logits"], REDUCED["mask_logits"], strict=True)):
                assert_matches(mask, record, name=f"mask logits {i}")
            for i, (cls, record) in enumerate(zip(out["class_logits"], expected["class_logits"], strict=True)):
                assert_matches(cls, record, name=f"{subset} class logits {i}")
            assert_matches(net.semantic(out, REDUCED["image_size"]), expected["semantic"], name=f"{subset} semantic")


def test_loss_equals_the_official_heads():
    """Same points (shape-keyed draws), same matching: the official class, mask and dice losses summed
    over the layers (the official loss_weights 2, 5, 5 and no-object 0.1 included)."""
    net = reduced_net().train()
    feats = official_features(REDUCED["in_channels"], [tuple(s) for s in REDUCED["level_sizes"]], REDUCED["batch"])
    for subset, n in REDUCED["heads"].items():
        labels = official_labels(REDUCED["batch"], *REDUCED["image_size"], n)
        with mock.patch("torch.rand", shape_keyed_rand):
            terms = net.loss(subset, net.decode(feats, subset), labels)
        expected = REDUCED["outputs"][subset]["loss"]
        assert {k: round(v.item(), 4) for k, v in terms.items()} == pytest.approx(expected, rel=1e-5)


def test_load_official_mask2former_names_heads_and_reads_sizes():
    # a ResNet whose levels have the reduced decoder's input widths (16, 32, 64, 128)
    backbone_kwargs = {"backbone": "resnet18", "layers": [1, 1, 1, 1], "channels": REDUCED["in_channels"],
                       "stem_width": 16}
    torch.manual_seed(0)
    encoder = TimmBackbone(**{"name": "resnet18", **{k: v for k, v in backbone_kwargs.items() if k != "backbone"}}
                           ).model.state_dict()
    decoder_and_heads = official_reduced_state()
    # the official DataParallel run: module. in front of everything and after each part
    state = {f"module.encoder.module.{k}": v for k, v in encoder.items()} | decoder_and_heads
    net = load_official_mask2former(state, num_heads=4, **backbone_kwargs)
    assert net.num_classes == {"sota": 5, "sior": 3} and not net.training
    assert torch.equal(net.backbone.model.state_dict()["layer3.0.conv2.weight"], encoder["layer3.0.conv2.weight"])
    qkv = decoder_and_heads["decoder.transformer_decoder.layers.2.self_attn.attn.in_proj_weight"]
    assert torch.equal(net.decoder.transformer.decoder.layers[2].self_attn.v_proj.weight, qkv[64:])
    assert net.decoder.transformer.queries_features.weight.shape == (6, 32)
    finetune = {f"encoder.{k}": v for k, v in encoder.items()} | {
        k: v for k, v in decoder_and_heads.items() if not k.startswith("semseghead")}
    finetune |= {"semseghead.cls_embed.weight": torch.zeros(6, 32), "semseghead.cls_embed.bias": torch.zeros(6)}
    assert load_official_mask2former(finetune, num_heads=4, **backbone_kwargs).num_classes == {"potsdam": 5}
    with pytest.raises(ValueError, match="not an official SAMRS Mask2Former"):
        load_official_mask2former(encoder)


def test_official_mask2former_files_load_through_load_official_and_start_a_finetuning(tmp_path):
    """The file path as users take it: load_official(FILE, "resnet50", "mask2former") and
    start=official_sep (load_pretrained: encoder and decoder, a new class predictor)."""
    from samrs.models.official import load_official
    from samrs.models.weights import load_pretrained

    backbone_kwargs = {"layers": [1, 1, 1, 1], "channels": REDUCED["in_channels"], "stem_width": 16}
    torch.manual_seed(0)
    encoder = TimmBackbone("resnet18", **backbone_kwargs).model.state_dict()
    state = {f"module.encoder.{k}": v for k, v in encoder.items()} | official_reduced_state()
    path = tmp_path / "best_resnet50_mask2former_pretrn_model.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    net = load_official(path, "resnet18", "mask2former", decoder_kwargs={"num_heads": 4}, **backbone_kwargs)
    assert net.num_classes == {"sota": 5, "sior": 3} and not net.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        scores = net(x, "sior")
    assert scores.shape == (1, 3, 64, 64) and torch.isfinite(scores).all()
    fresh = Mask2FormerSegmentor(TimmBackbone("resnet18", **backbone_kwargs),
                                 partial(Mask2FormerDecoder, num_heads=4, **official_decoder_kwargs(state)),
                                 {"potsdam": 5})
    head_before = fresh.heads["potsdam"].weight.clone()
    assert load_pretrained(fresh, path) == ["backbone", "decoder"]
    assert torch.equal(fresh.backbone.model.state_dict()["layer2.0.conv1.weight"], encoder["layer2.0.conv1.weight"])
    assert torch.equal(fresh.decoder.state_dict()["transformer.queries_features.weight"],
                       net.decoder.state_dict()["transformer.queries_features.weight"])
    assert torch.equal(fresh.heads["potsdam"].weight, head_before)
    with pytest.raises(ValueError, match="mask2former.*not an official SAMRS Mask2Former"):
        torch.save({"state_dict": {f"encoder.{k}": v for k, v in encoder.items()} |
                    {"semseghead_1.cls_embed.weight": torch.zeros(6, 32)}}, tmp_path / "other.pth")
        load_official(tmp_path / "other.pth", "resnet18", "mask2former", **backbone_kwargs)


# --- experiments -----------------------------------------------------------------------------------

def compose(experiment: str, *overrides: str):
    from test_train_sep import compose_train

    return compose_train([f"experiment={experiment}", *overrides], Path("/nonexistent"))


def test_experiments_have_the_official_settings():
    sep = compose("sep_r50_mask2former")
    decoder = sep.model.net.decoder
    assert (decoder.hidden_dim, decoder.num_queries, decoder.encoder_layers, decoder.decoder_layers, decoder.num_heads) \
        == (256, 100, 6, 9, 8)
    assert OmegaConf.to_container(sep.model.net.criterion) == OFFICIAL_CRITERION
    assert (sep.model.optimizer.lr, sep.model.optimizer.weight_decay, sep.model.scheduler.min_lr) == (1e-3, 0.05, 5e-6)
    assert not sep.model.param_groups.no_decay_norm and sep.trainer.gradient_clip_val == 5.0
    assert sep.name == "sep_r50_mask2former" and sep.data.batch_size == 96
    sep_net = OmegaConf.to_container(sep.model.net, resolve=True)
    for dataset in ("potsdam", "isaid"):
        ft = compose(f"ft_{dataset}_r50_mask2former")
        assert (ft.model.optimizer.lr, ft.model.optimizer.weight_decay, ft.model.scheduler.min_lr) == (1e-4, 0.05, 0.0)
        assert ft.model.param_groups.no_decay_norm and ft.trainer.gradient_clip_val == 0.01
        assert ft.model_key == "r50_mask2former" and ft.model.inference.window == ft.data.tiling.size
        net = OmegaConf.to_container(ft.model.net, resolve=True)
        assert net["backbone"].pop("pretrained") is True  # start=imp; otherwise the pre-training's network
        assert net == {**sep_net, "backbone": {k: v for k, v in sep_net["backbone"].items() if k != "pretrained"}}
    assert compose("ft_loveda", "ft_model=r50_mask2former").trainer.gradient_clip_val == 0.01


def test_finetuning_spares_norms_queries_and_the_decoders_level_embedding_from_weight_decay():
    cfg = compose("ft_potsdam_r50_mask2former_debug", "model.net.heads={potsdam: 5}")
    net = instantiate(cfg.model.net)
    groups = param_groups(net, lr=1e-4, weight_decay=0.05, **cfg.model.param_groups)
    decay = {n for n, p in net.named_parameters() for g in groups if g["weight_decay"] > 0 and any(p is q for q in g["params"])}
    assert "decoder.transformer.queries_embedder.weight" not in decay
    assert "decoder.transformer.queries_features.weight" not in decay
    assert "decoder.transformer.level_embed.weight" not in decay
    assert "decoder.pixel_decoder.level_embed" in decay  # officially `level_encoding`: no custom key matched it
    assert "decoder.pixel_decoder.input_projections.0.1.weight" not in decay  # GroupNorm
    assert "backbone.model.layer1.0.conv1.weight" in decay and "heads.potsdam.weight" in decay


@pytest.mark.slow
def test_debug_pretraining_exports_the_trunk_and_finetuning_starts_from_it(generated_subsets, tmp_path):
    """sep_r50_mask2former_debug (4 steps) -> pretrained.pt -> ft_potsdam_r50_mask2former_debug start=sep."""
    from test_train_sep import column, read_metrics, run

    from samrs.models import read_state_dict
    from samrs.train import train

    out = tmp_path / "sep"
    metrics = run("sep_r50_mask2former_debug", out, generated_subsets)
    assert 0.0 <= metrics["val/mIoU"] <= 1.0
    rows = read_metrics(out)
    for subset in ("sota", "sior", "fast"):
        total = column(rows, f"train/loss/{subset}")
        parts = [column(rows, f"train/{t}/{subset}") for t in ("loss_cls", "loss_mask", "loss_dice")]
        assert all(abs(total[s] - sum(p[s] for p in parts)) < 1e-3 * total[s] for s in total)
        assert column(rows, f"val/loss/{subset}")
    state, meta = read_state_dict(out / "pretrained.pt")
    assert {k.split(".")[0] for k in state} == {"backbone", "decoder"} and meta["decoder"] == "Mask2FormerDecoder"
    ft = tmp_path / "ft"
    from test_train_sep import QUICK, compose_train

    cfg = compose_train(["experiment=ft_potsdam_r50_mask2former_debug", "start=sep",
                         f"start.checkpoint={out / 'pretrained.pt'}", *QUICK[:5], "trainer.max_steps=2",
                         "trainer.val_check_interval=2"], ft)
    scores = train(cfg)
    assert 0.0 <= scores["val/mIoU"] <= 1.0
