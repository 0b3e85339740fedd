"""vitaev2_s against facts recorded from the official code (official_fixtures/vitaev2_s.json, written by a
script outside the repository from the official SAMRS, ImageNet and RSP modules): the state_dict layout,
the outputs of a reduced-depth model filled by the shared rule, and the published weight-file layouts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from official_helpers import assert_matches, fill_like_official, key_shapes, official_input

from samrs.models import TimmBackbone, load_pretrained
from samrs.models.backbones.vitaev2 import checkpoint_filter_fn, official_drop_path_rates
from samrs.utils.hydra import config_dir

FIXTURE = json.loads((Path(__file__).parent / "official_fixtures" / "vitaev2_s.json").read_text())
REDUCED = FIXTURE["reduced"]["kwargs"]


def reduced_model(**kwargs) -> torch.nn.Module:
    return fill_like_official(timm.create_model("vitaev2_s", **REDUCED, **kwargs)).eval()


def assert_levels(levels: list[torch.Tensor]) -> None:
    expected = FIXTURE["reduced"]["levels"]
    assert len(levels) == len(expected)
    for i, (level, record) in enumerate(zip(levels, expected)):
        assert_matches(level, record, name=f"level {i}")


def published_file(path: Path, layout: str, extra: dict | None = None) -> Path:
    """A classification checkpoint in the published `layout` (keys from the fixture), with the values the
    fill rule gives those keys, wrapped as the official training scripts save it."""
    model = reduced_model(num_classes=FIXTURE[layout]["only_in_file"]["head.weight"][0])
    state = {k: v for k, v in model.state_dict().items() if k not in FIXTURE[layout]["not_in_file"]}
    state.update(extra or {})
    wrapped = ({"state_dict": state, "state_dict_ema": state, "epoch": 300, "arch": "ViTAEv2_S"}
               if layout == "imagenet" else {"model": state, "epoch": 99, "max_accuracy": 99.1})
    torch.save(wrapped, path)
    return path


def test_full_model_keys_and_shapes_are_the_official_ones():
    model = timm.create_model("vitaev2_s")
    assert key_shapes(model) == FIXTURE["keys"]
    assert [i["num_chs"] for i in model.feature_info] == [64, 128, 256, 512]
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]


def test_reduced_model_gives_the_official_outputs_directly_and_through_timm_features():
    model = reduced_model()
    x = official_input(FIXTURE["reduced"]["input"])
    with torch.no_grad():
        assert_levels(model.forward_intermediates(x, intermediates_only=True))
        backbone = TimmBackbone(name="vitaev2_s", **REDUCED).eval()
        backbone.model.model.load_state_dict(model.state_dict())
        assert backbone.channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
        assert_levels(backbone(x))
        # the last level is also what forward_features gives; norm=True applies the per-level norms
        torch.testing.assert_close(model.forward_features(x), backbone(x)[-1])
        normed = model.forward_intermediates(x, indices=[3], norm=True, intermediates_only=True)[0]
        torch.testing.assert_close(normed, model.norm3(backbone(x)[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def test_imagenet_checkpoint_loads_strictly_and_gives_the_official_logits(tmp_path):
    """ImageNet ViTAEv2-S (.pth.tar of the timm training script): no relative tables, no per-level norms, a
    1000-class head. With a head it reproduces the official classifier; as a backbone the head is dropped."""
    path = published_file(tmp_path / "ViTAEv2-S.pth.tar", "imagenet")
    classifier = timm.create_model("vitaev2_s", **REDUCED, num_classes=1000, pretrained=True,
                                   pretrained_cfg_overlay={"file": str(path), "num_classes": 1000}).eval()
    with torch.no_grad():
        assert_matches(classifier(official_input(FIXTURE["imagenet"]["input"])), FIXTURE["imagenet"]["logits"],
                       name="logits")
        backbone = TimmBackbone(name="vitaev2_s", checkpoint=str(path), **REDUCED).eval()
        assert_levels(backbone(official_input(FIXTURE["reduced"]["input"])))


def test_rsp_checkpoint_loads_strictly_as_backbone(tmp_path):
    path = published_file(tmp_path / "rsp-vitaev2-s-ckpt.pth", "rsp")
    backbone = TimmBackbone(name="vitaev2_s", checkpoint=str(path), **REDUCED).eval()
    with torch.no_grad():
        assert_levels(backbone(official_input(FIXTURE["reduced"]["input"])))


def test_official_sep_checkpoint_keeps_the_encoder_only():
    """SAMRS SEP writes {'state_dict': model.state_dict()}: encoder.*, decoder.*, semseghead_<k>.*."""
    source = reduced_model()
    state = {f"encoder.{k}": v for k, v in source.state_dict().items()}
    state |= {"decoder.fpn_bottleneck.conv.weight": torch.zeros(128, 512, 3, 3),
              "semseghead_1.1.weight": torch.zeros(18, 128, 1, 1)}
    target = timm.create_model("vitaev2_s", **REDUCED)
    ckpt = {"state_dict": state, "epoch": 3, "iteration": 80000}
    target.load_state_dict(checkpoint_filter_fn(ckpt, target), strict=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_file_of_another_architecture_is_an_error(tmp_path):
    missing = [k for k in FIXTURE["keys"] if k.startswith("layers.3.NC.0.mlp.fc1")]
    path = published_file(tmp_path / "broken.pth", "rsp")
    ckpt = torch.load(path)
    ckpt["model"] = {k: v for k, v in ckpt["model"].items() if k not in missing}
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="missing layers.3.NC.0.mlp.fc1"):
        TimmBackbone(name="vitaev2_s", checkpoint=str(path), **REDUCED)


def test_relative_tables_of_another_window_are_resized():
    model = timm.create_model("vitaev2_s", **REDUCED, window_size=5)
    key = "layers.0.NC.0.attn.relative_position_bias_table"
    state = {k: v for k, v in model.state_dict().items()}
    state[key] = torch.full((13 * 13, 1), 0.25)  # a window-7 table; constant, so bicubic keeps it
    out = checkpoint_filter_fn(state, model)
    assert out[key].shape == (9 * 9, 1)
    torch.testing.assert_close(out[key], torch.full((81, 1), 0.25))


def test_inputs_must_be_multiples_of_32_and_may_be_rectangular():
    model = timm.create_model("vitaev2_s", **REDUCED).eval()
    with torch.no_grad():
        levels = model.forward_intermediates(torch.zeros(1, 3, 64, 96), intermediates_only=True)
        shapes = [tuple(f.shape[-2:]) for f in levels]
        assert shapes == [(16, 24), (8, 12), (4, 6), (2, 3)]
        with pytest.raises(ValueError, match="multiples of 32"):
            model(torch.zeros(1, 3, 72, 72))


def test_parameter_groups_and_official_drop_path_rates():
    backbone = TimmBackbone(name="vitaev2_s", **REDUCED)
    ids = backbone.layer_ids()
    by_cell: dict[str, set[int]] = {}
    for name, layer in ids.items():
        cell = re.match(r"model\.model\.(layers\.\d+\.(RC|NC\.\d+)|norm\d)", name).group(1)
        by_cell.setdefault(cell, set()).add(layer)
    # embedding (first reduction cell) 0, then every cell in order; the per-level norms join the last group
    assert by_cell == {"layers.0.RC": {0}, "layers.0.NC.0": {1}, "layers.1.RC": {2}, "layers.1.NC.0": {3},
                       "layers.2.RC": {4}, "layers.2.NC.0": {5}, "layers.2.NC.1": {6}, "layers.3.RC": {7},
                       "layers.3.NC.0": {8}, "norm0": {8}, "norm1": {8}, "norm2": {8}, "norm3": {8}}
    no_decay = backbone.model.model.no_weight_decay()
    assert "layers.0.NC.0.norm1.weight" in no_decay and "norm3.bias" in no_decay
    assert "layers.0.NC.0.attn.relative_position_bias_table" in no_decay
    assert "layers.0.NC.0.PCM.1.weight" not in no_decay  # BatchNorm: the official 'norm' key misses it
    # official slicing: stage i > 0 starts at depths[i - 1], not at the cumulative depth
    ramp = torch.linspace(0, 0.3, 14).tolist()
    assert official_drop_path_rates([2, 2, 8, 2], 0.3) == [ramp[0:2], ramp[2:4], ramp[2:10], ramp[8:10]]
    full = timm.create_model("vitaev2_s")
    rates = [getattr(cell.drop_path, "drop_prob", 0.0) for stage in full.layers for cell in stage.NC]
    assert rates == ramp[0:4] + ramp[2:10] + ramp[8:10]


# --- configs and the debug experiment ---------------------------------------------------------------------

def compose_train(*overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def test_experiments_have_the_official_settings():
    cfg = compose_train("experiment=sep_vitaev2_s")
    assert (cfg.name, cfg.model_key, cfg.model.net.backbone.name) == ("sep_vitaev2_s", "vitaev2_s", "vitaev2_s")
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay, cfg.model.scheduler.min_lr) == (6e-5, 0.01, 0.0)
    assert cfg.model.param_groups.layer_decay is None and cfg.model.net.backbone.drop_path_rate == 0.3
    assert cfg.model.net.decoder.channels == 128  # the official UPerHead width: the second level's channels
    for experiment in ("ft_potsdam_vitaev2_s", "ft_isaid_vitaev2_s"):
        ft = compose_train(f"experiment={experiment}", "start=sep", "paths.log_dir=/runs")
        assert ft.model.net.backbone == cfg.model.net.backbone and ft.model.optimizer == cfg.model.optimizer
        assert ft.start.checkpoint == "/runs/train/sep_vitaev2_s/pretrained.pt"
        assert ft.model_label.backbone == "ViTAEv2-S"


@pytest.mark.slow
def test_debug_pretraining_runs_and_its_export_loads_into_the_debug_finetuning(generated_subsets, tmp_path):
    data = [f"data.subsets.{k}.root={v}" for k, v in generated_subsets.items()] + ["data.generate=null"]
    quick = ["trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "logger=csv",
             "extras.print_config=false", "callbacks.rich_progress_bar=null", "data.val_transform.crop_size=64"]
    env = {**os.environ, "SAMRS_ROOT": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "samrs.train", "experiment=sep_vitaev2_s_debug", *quick, *data],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (tmp_path / "logs/train/sep_vitaev2_s_debug").glob("csv/version_*/metrics.csv")
    assert any("val/mIoU/sior" in path.read_text() for path in rows)
    ft = compose_train("experiment=ft_potsdam_vitaev2_s_debug", "start=sep", f"paths.log_dir={tmp_path}/logs",
                       "model.net.heads={potsdam:6}")
    net = instantiate(ft.model.net, _convert_="all")
    assert load_pretrained(net, ft.start.checkpoint) == ["backbone", "decoder"]
