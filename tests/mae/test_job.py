"""SAMRS-MAE as a job: the experiment's settings, MAE's lr rule, the debug run, and its export
starting the SEP models (python -m samrs.train experiment=mae_vit_b_samrs, then start=samrs_mae)."""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from test_train_sep import compose_train, data_overrides

import samrs.models  # noqa: F401  (registers the zoo backbones)
from samrs.errors import ConfigError, MissingPathError
from samrs.evaluate import evaluate
from samrs.models.mae import MaskedAutoencoder, export_mae
from samrs.tasks.mae import MAETask
from samrs.train import check_start, train
from samrs.utils.hydra import config_dir


def compose_evaluate(ckpt_path: Path, out: Path):
    """The config of `python -m samrs.evaluate ckpt_path=<ckpt_path>`, writing to `out`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={ckpt_path}", f"paths.output_dir={out}"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    return cfg


QUICK = ["extras.print_config=false", "logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]


def test_experiment_has_the_official_settings():
    cfg = compose_train(["experiment=mae_vit_b_samrs"], Path("/nonexistent"))
    assert cfg.name == "mae_vit_b_samrs" and list(cfg.data.subsets) == ["sota", "sior", "fast"]
    assert (cfg.data.crops.size, cfg.data.crops.stride, cfg.data.transform.input_size) == (384, 300, 224)
    assert tuple(cfg.data.transform.scale) == (0.2, 1.0) and cfg.data.transform.hflip == 0.5
    net = cfg.model.net
    assert (net.img_size, net.patch_size, net.embed_dim, net.depth, net.num_heads) == (224, 16, 768, 12, 12)
    assert (net.decoder_dim, net.decoder_depth, net.decoder_heads) == (512, 8, 16)
    assert (net.mask_ratio, net.norm_pix_loss) == (0.75, True)
    assert tuple(cfg.model.optimizer.betas) == (0.9, 0.95) and cfg.model.optimizer.weight_decay == 0.05
    assert (cfg.model.base_lr, cfg.model.lr, cfg.model.warmup_epochs, cfg.model.min_lr) == (1.5e-4, None, 40, 0.0)
    assert cfg.trainer.max_epochs == 1600 and cfg.trainer.precision == "bf16-mixed"
    assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches == 2048  # MAE's total batch on one GPU
    assert cfg.trainer.gradient_clip_val is None and cfg.trainer.limit_val_batches == 0


def fake_trainer(batch: int, world: int, accumulate: int, batches_per_epoch: int, total_steps: int):
    return SimpleNamespace(datamodule=SimpleNamespace(batch_size=batch), world_size=world,
                           accumulate_grad_batches=accumulate, num_training_batches=batches_per_epoch,
                           estimated_stepping_batches=total_steps)


def test_lr_follows_the_total_batch_and_warms_up_over_epochs():
    net = MaskedAutoencoder(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, decoder_dim=32,
                            decoder_depth=1, decoder_heads=2)
    task = MAETask(net, optimizer=torch.optim.AdamW, base_lr=1.5e-4, warmup_epochs=2)
    # 8 processes x 256 (MAE's run): 1.5e-4 x 2048 / 256; 100 batches per epoch, 1000 steps in all
    task._trainer = fake_trainer(256, 8, 1, 100, 1000)
    config = task.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert [g["initial_lr"] for g in optimizer.param_groups] == pytest.approx([1.2e-3] * len(optimizer.param_groups))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
    assert id(net.cls_token) in decayed and id(net.blocks[0].attn.qkv.weight) in decayed
    assert id(net.blocks[0].attn.qkv.bias) not in decayed and id(net.norm.weight) not in decayed
    factors = [scheduler.lr_lambdas[0](s) for s in (0, 99, 199, 200, 600, 999)]
    assert factors[:3] == pytest.approx([1 / 200, 100 / 200, 1.0])  # warm-up: 2 epochs of 100 steps
    assert factors[3] == pytest.approx(1.0) and factors[4] == pytest.approx(0.5) and factors[5] < 1e-4
    task._trainer = fake_trainer(16, 1, 4, 10, 100)  # accumulated batches count too
    assert task.total_batch_size() == 64


def mae_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def backbone_matches(net: torch.nn.Module, mae: dict[str, torch.Tensor]) -> int:
    """How many of the MAE encoder's block and patch-embedding tensors the backbone holds, asserting
    that each equals the file's (matched by name suffix through timm's feature wrapper)."""
    own = net.backbone.state_dict()
    matched = 0
    for key, value in mae.items():
        if key.startswith(("blocks.", "patch_embed.")):
            found = [k for k in own if k.endswith("." + key) or k.endswith("." + key.replace(".", "_", 1))]
            assert len(found) == 1, (key, found)
            assert torch.equal(own[found[0]], value), key
            matched += 1
    return matched


OFFICIAL_VIT_B = "vit_b" in timm.list_models("vit_b")  # samrs' official ViT-B (model zoo, zoo_official branch)


@pytest.mark.parametrize("experiment", [
    "sep_vit_b_rvsa_debug",
    pytest.param("sep_vit_b_debug", marks=pytest.mark.xfail(
        not OFFICIAL_VIT_B, strict=True, reason="timm's own ViT keeps MAE's decoder keys; the official ViT-B "
        "(vit_b) that sep_vit_b builds after the model-zoo merge drops them, as the official init_weights")),
])
def test_exported_and_released_mae_files_start_the_sep_vit_models(experiment, tmp_path):
    debug = dict(embed_dim=48, depth=4, num_heads=2, decoder_dim=32, decoder_depth=2, decoder_heads=2)
    exported = MaskedAutoencoder(img_size=64, **debug)
    # the released files: MAE's checkpoint-1599.pth layout, 224 input, optimiser, scaler and arguments beside
    released = MaskedAutoencoder(img_size=224, **debug)
    files = {"export": export_mae(exported, tmp_path / "mae.pth", epoch=0, meta={}), "released": tmp_path / "rel.pth"}
    torch.save({"model": released.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 1599,
                "scaler": {"scale": 65536.0}, "args": argparse.Namespace(input_size=224, norm_pix_loss=True)},
               files["released"])
    for kind, mae in (("export", exported), ("released", released)):
        cfg = compose_train([f"experiment={experiment}", "start=samrs_mae", f"start.checkpoint={files[kind]}",
                             "model.net.heads={sota:18}"], tmp_path)
        assert cfg.name == experiment.replace("_debug", "_samrs_mae_debug")
        net = hydra.utils.instantiate(cfg.model.net)
        assert backbone_matches(net, mae.state_dict()) == 2 + 4 * 12, kind


def test_starts_find_the_runs_that_write_them(tmp_path):
    sep = compose_train(["experiment=sep_vit_b_rvsa_debug", "start=samrs_mae"], tmp_path)
    assert sep.start.checkpoint == f"{tmp_path}/train/mae_vit_b_samrs_debug/mae.pth"
    with pytest.raises(MissingPathError, match="python -m samrs.train experiment=mae_vit_b_samrs_debug first"):
        check_start(sep)
    ft = compose_train(["experiment=ft_potsdam_vit_b_rvsa", "start=samrs_mae_sep"], tmp_path)
    assert ft.start.label == "SAMRS-MAE+SEP"
    assert ft.model.net.pretrained == f"{tmp_path}/train/sep_vit_b_rvsa_samrs_mae/pretrained.pt"
    full = compose_train(["experiment=ft_potsdam_vit_b_rvsa", "start=samrs_mae"], tmp_path)
    assert full.model.net.backbone.checkpoint == f"{tmp_path}/train/mae_vit_b_samrs/mae.pth"


@pytest.mark.slow
def test_debug_experiment_trains_prints_its_crops_and_starts_sep(generated_subsets, tmp_path, caplog):
    """The first two of the README's three commands, on generated data."""
    logs = tmp_path / "logs"
    run_dir = logs / "train" / "mae_vit_b_samrs_debug"
    cfg = compose_train(["experiment=mae_vit_b_samrs_debug", *QUICK, *data_overrides(generated_subsets),
                         "data.crops.size=48", "data.crops.stride=16"], run_dir)
    cfg.paths.log_dir = str(logs)
    with caplog.at_level("INFO"):
        metrics = train(cfg)
    train_images = sum(len((v / "train.txt").read_text().split()) for v in generated_subsets.values())
    assert f"{4 * train_images:,} crops in all" in caplog.text
    assert math.isfinite(metrics["train/loss"])
    with open(next(run_dir.glob("csv/version_*/metrics.csv"))) as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    steps = 2 * (4 * train_images // 16)  # two epochs of full batches of 16
    assert int(rows[-1]["step"]) == steps - 1
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(run_dir / "mae.pth", weights_only=True)
    assert saved["epoch"] == 1 and saved["samrs"]["global_step"] == steps
    with pytest.raises(ConfigError, match="an MAE pre-training"):  # samrs.evaluate ckpt_path=<the MAE run>
        evaluate(compose_evaluate(run_dir, tmp_path / "evaluate"))
    sep = compose_train(["experiment=sep_vit_b_rvsa_debug", "start=samrs_mae", "model.net.heads={sota:18}"], tmp_path)
    sep.paths.log_dir = str(logs)
    check_start(sep)
    assert backbone_matches(hydra.utils.instantiate(sep.model.net), saved["model"]) == 2 + 4 * 12
