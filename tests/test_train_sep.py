"""The pre-training job end to end: experiments, logging, export, bad configuration, DDP,
sweeps (python -m samrs.train experiment=sep_*). Resume: tests/test_resume.py."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import samrs.train
from samrs.models import check_input_sizes, load_pretrained, read_state_dict
from samrs.train import train
from samrs.utils.hydra import config_dir

EXPERIMENTS = ["sep_r50_upernet", "sep_r50_unet", "sep_swin_t", "sep_vit_b", "sep_convnext_t"]
# Small, fast, no console noise: csv logging only, one validation batch per subset, no sanity check.
QUICK = [
    "extras.print_config=false", "logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null",
    "trainer.num_sanity_val_steps=0", "trainer.limit_val_batches=1", "trainer.max_steps=4",
    "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "data.val_transform.crop_size=64",
]


def data_overrides(subsets: dict[str, Path]) -> list[str]:
    return [f"data.subsets.{k}.root={v}" for k, v in subsets.items()] + ["data.generate=null", "data.num_workers=0"]


def compose_train(overrides: list[str], out: Path | None = None) -> DictConfig:
    """The config `python -m samrs.train <overrides>` would run, with its outputs in `out`."""
    GlobalHydra.instance().clear()
    paths = [f"paths.output_dir={out}", f"paths.log_dir={out}", f"paths.data_dir={out}/data"] if out else []
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, *paths], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run(experiment: str, out: Path, subsets: dict[str, Path], *extra: str) -> dict[str, float]:
    return train(compose_train([f"experiment={experiment}", *QUICK, *data_overrides(subsets), *extra], out))


def read_metrics(out: Path) -> list[dict[str, str]]:
    files = sorted(out.glob("csv/version_*/metrics.csv"))
    with open(files[-1]) as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    """step -> value of one logged metric."""
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


@pytest.fixture(scope="module")
def swin_run(generated_subsets, tmp_path_factory) -> Path:
    """sep_swin_t_debug, 4 steps, validation at steps 2 and 4: the run the logging tests read."""
    out = tmp_path_factory.mktemp("sep_swin_t_debug")
    metrics = run("sep_swin_t_debug", out, generated_subsets)
    assert 0.0 <= metrics["val/mIoU"] <= 1.0
    return out


# --- experiments -----------------------------------------------------------------------------------

PAPER = {  # lr, weight decay, min lr, layer decay (paper Tables 7-8, official code; ConvNeXt: mmseg)
    "sep_r50_upernet": (1e-3, 0.05, 5e-6, None),
    "sep_r50_unet": (1e-3, 0.05, 5e-6, None),
    "sep_swin_t": (6e-5, 0.01, 0.0, None),
    "sep_vit_b": (6e-5, 0.05, 0.0, 0.9),
    "sep_convnext_t": (1e-4, 0.05, 0.0, None),
}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_has_the_papers_settings(experiment):
    cfg = compose_train([f"experiment={experiment}"], Path("/nonexistent"))
    assert cfg.name == experiment
    assert (cfg.trainer.max_steps, cfg.data.batch_size) == (80000, 96)
    assert (cfg.data.train_transform.crop_size, cfg.data.val_transform.crop_size) == (224, 512)
    assert (cfg.trainer.gradient_clip_val, cfg.trainer.precision) == (5.0, "bf16-mixed")
    assert list(cfg.data.subsets) == ["sota", "sior", "fast"]
    lr, wd, min_lr, layer_decay = PAPER[experiment]
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == (lr, wd)
    assert tuple(cfg.model.optimizer.betas) == (0.9, 0.999)
    assert cfg.model.scheduler.min_lr == min_lr and cfg.model.param_groups.layer_decay == layer_decay
    # the official UperNet width: the backbone's second level (null); ConvNeXt (not in the paper): mmseg's 512
    assert cfg.model.net.decoder.get("channels") == (512 if experiment == "sep_convnext_t" else None)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_paper_size_model_builds_and_takes_224_crops(experiment):
    cfg = compose_train([f"experiment={experiment}", "model.net.heads={sota:18,sior:20,fast:37}"], Path("/nonexistent"))
    net = hydra.utils.instantiate(cfg.model.net)
    backbone_params = sum(p.numel() for p in net.backbone.parameters()) / 1e6
    expected = {"sep_r50_upernet": 23.5, "sep_r50_unet": 23.5, "sep_swin_t": 27.5, "sep_vit_b": 92.9, "sep_convnext_t": 27.8}
    assert backbone_params == pytest.approx(expected[experiment], rel=0.02)
    check_input_sizes(net, {"data.train_transform.crop_size": 224})


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [f"{e}_debug" for e in EXPERIMENTS if e != "sep_swin_t"])
def test_debug_experiment_trains_and_exports(experiment, generated_subsets, tmp_path):
    metrics = run(experiment, tmp_path, generated_subsets)
    assert {f"val/mIoU/{k}" for k in generated_subsets} <= set(metrics)
    assert math.isfinite(metrics["train/loss"])
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and (tmp_path / "pretrained.pt").is_file()


# --- logging, checkpoints, export -------------------------------------------------------------------

def test_per_subset_losses_add_up_to_the_logged_total(swin_run):
    rows = read_metrics(swin_run)
    total = column(rows, "train/loss")
    parts = [column(rows, f"train/loss/{k}") for k in ("sota", "sior", "fast")]
    assert sorted(total) == [0, 1, 2, 3]
    for step, value in total.items():
        assert value == pytest.approx(sum(p[step] for p in parts), rel=1e-5)


@pytest.mark.parametrize(("stepped", "every", "fast_dev_run", "expected"),
                         [(0, 1, False, True), (0, 50, False, False), (49, 50, False, True), (50, 50, False, False),
                          (3, 50, True, True)])
def test_per_subset_losses_are_logged_on_the_logging_steps_only(stepped, every, fast_dev_run, expected):
    from types import SimpleNamespace
    from samrs.tasks.segmentation import SegmentationTask
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(_batches_that_stepped=stepped))
    task = SimpleNamespace(_trainer=SimpleNamespace(fit_loop=loop, log_every_n_steps=every, fast_dev_run=fast_dev_run))
    assert SegmentationTask._logging_step(task) is expected


def test_run_logs_lr_per_subset_and_per_class_metrics(swin_run):
    rows = read_metrics(swin_run)
    lr = column(rows, "lr-AdamW/decay")
    assert lr[0] == pytest.approx(6e-5)  # cosine from the Swin lr ...
    assert lr[3] == pytest.approx(6e-5 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # ... per iteration over 4 steps
    assert column(rows, "lr-AdamW/no_decay")[3] == pytest.approx(lr[3])
    keys = set(rows[0])
    assert {"val/mIoU", "val/mIoU/sota", "val/mIoU/sior", "val/mIoU/fast", "val/IoU/sota/large-vehicle",
            "val/IoU/fast/Warship", "val/OA/sior"} <= keys
    hparams = yaml.safe_load(next(swin_run.glob("csv/version_*/hparams.yaml")).read_text())
    assert hparams["model/params/total"] == hparams["model/params/trainable"] > 0
    assert hparams["model"]["optimizer"]["lr"] == 6e-5


def test_run_writes_checkpoints_images_and_tables(swin_run, generated_subsets):
    ckpts = {p.name for p in (swin_run / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and any(n.startswith("best_step") for n in ckpts)
    assert torch.load(swin_run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    for step in ("step000002", "step000004"):
        for subset, root in generated_subsets.items():
            images = sorted((swin_run / "val_images" / step / subset).glob("*.png"))
            assert len(images) == min(4, len((root / "val.txt").read_text().split()))  # 4 of the first batch
    table = (swin_run / "val_tables" / "val_step000004.md").read_text()
    assert "## fast" in table and "| Warship |" in table and "| mIoU | mF1 | mAcc | OA |" in table


def test_exported_state_dict_loads_into_a_finetuning_model(swin_run):
    state, meta = read_state_dict(swin_run / "pretrained.pt")
    assert meta["backbone"] == "swin_t" and meta["heads"] == {"sota": 18, "sior": 20, "fast": 37}
    assert not any(k.startswith("heads.") for k in state)
    best = next((swin_run / "checkpoints").glob("best_step*.ckpt"))
    assert meta["source"] == str(best)
    cfg = compose_train(["experiment=sep_swin_t_debug"], swin_run)
    finetune = hydra.utils.instantiate(cfg.model.net, heads={"potsdam": 6})
    assert load_pretrained(finetune, swin_run / "pretrained.pt") == ["backbone", "decoder"]
    best_state, _ = read_state_dict(best)
    for k, v in finetune.state_dict().items():
        if k.startswith(("backbone.", "decoder.")):
            torch.testing.assert_close(v, best_state[k])
    assert finetune.eval()(torch.zeros(1, 3, 64, 64), "potsdam").shape == (1, 6, 64, 64)


# --- bad configuration fails before training -------------------------------------------------------

def test_head_class_count_must_match_the_subset(generated_subsets, tmp_path):
    with pytest.raises(ValueError, match=r"model.net.heads=.*does not match.*model.net.heads=null"):
        run("sep_swin_t_debug", tmp_path, generated_subsets, "model.net.heads={sota:5,sior:20,fast:37}")
    assert not (tmp_path / "checkpoints").exists()


def test_crop_size_the_backbone_cannot_take(generated_subsets, tmp_path):
    with pytest.raises(ValueError, match=r"data.train_transform.crop_size=72: .*multiple of .*\(32\)"):
        run("sep_vit_b_debug", tmp_path, generated_subsets, "data.train_transform.crop_size=72")
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_of_another_model_is_refused(swin_run, generated_subsets, tmp_path):
    ckpt = swin_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ValueError, match=r"does not fit the model of this config: missing .*backbone"):
        run("sep_convnext_t_debug", tmp_path, generated_subsets, f"ckpt_path={ckpt}")


# --- several processes, sweeps -----------------------------------------------------------------------

def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMRS_ROOT": str(cwd), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "samrs.train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(generated_subsets, tmp_path):
    # 8 per process: the global 16 splits 6 / 5 / 5, at least 2 of each subset per process (BatchNorm
    # without SyncBatchNorm, which needs GPUs)
    proc = run_cli(["experiment=sep_convnext_t_debug", "trainer=ddp_cpu", "name=ddp", *QUICK,
                    *data_overrides(generated_subsets), "data.batch_size=8"], tmp_path)
    out = tmp_path / "logs" / "train" / "ddp"
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4
    assert column(read_metrics(out), "val/mIoU")
    assert (out / "pretrained.pt").is_file() and (out / "metrics.json").is_file()
    # rank zero's log lines reach the console and the log file, the summary names every output
    log = (out / "train.log").read_text()
    assert "x batch 16 (8 per process x 2 processes)" in log and "each process takes per step: sota 3" in log
    assert "last checkpoint:" in log and "pre-trained weights for fine-tuning" in log
    assert "last checkpoint:" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_multirun_over_backbones_and_lrs_and_optuna_sweep(generated_subsets, tmp_path):
    quick = [*QUICK, "trainer.max_steps=2", *data_overrides(generated_subsets)]
    run_cli(["-m", "experiment=sep_convnext_t_debug,sep_vit_b_debug", "model.optimizer.lr=1e-3,1e-4", "name=grid",
             *quick], tmp_path)
    jobs = sorted((tmp_path / "logs" / "train" / "multirun" / "grid").glob("[0-9]*"))
    assert len(jobs) == 4 and all((j / "checkpoints" / "last.ckpt").is_file() for j in jobs)
    configs = [yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["model"] for j in jobs]
    grid = {(c["net"]["backbone"]["name"], c["optimizer"]["lr"]) for c in configs}
    assert grid == {(b, lr) for b in ("convnext_tiny", "vit_b") for lr in (1e-3, 1e-4)}

    run_cli(["hparams_search=optuna", "experiment=sep_convnext_t_debug", "name=optuna", "hydra.sweeper.n_trials=2",
             "hydra.sweeper.sampler.n_startup_trials=1", *quick], tmp_path)
    results = yaml.safe_load((tmp_path / "logs" / "train" / "multirun" / "optuna" / "optimization_results.yaml").read_text())
    assert 0.0 <= results["best_value"] <= 1.0 and "model.optimizer.lr" in results["best_params"]


def test_resume_continues_the_runs_wandb_run(tmp_path):
    run_dir = tmp_path / "wandb" / "offline-run-20261124_223628-njqqwexv"
    run_dir.mkdir(parents=True)
    (tmp_path / "wandb" / "latest-run").symlink_to(run_dir)
    cfg = compose_train(["experiment=sep_swin_t_debug", "logger=wandb"], tmp_path)
    samrs.train.continue_wandb_run(cfg)
    assert cfg.logger.wandb.id == "njqqwexv"
    given = compose_train(["experiment=sep_swin_t_debug", "logger=wandb", "logger.wandb.id=abc"], tmp_path)
    samrs.train.continue_wandb_run(given)
    assert given.logger.wandb.id == "abc"


def test_one_image_of_a_subset_per_step_is_explained(generated_subsets, tmp_path):
    with pytest.raises(ValueError, match=r"per-subset batch sizes .*raise data.batch_size"):
        run("sep_convnext_t_debug", tmp_path, generated_subsets, "data.batch_size=3")


def test_a_refused_fresh_run_leaves_the_earlier_runs_checkpoints_in_place(tmp_path):
    """A fresh run moves the earlier run's checkpoints aside only once it is sure to start: a missing
    start file stops it first, and `ckpt_path=<run>` still finds last.ckpt."""
    from samrs.errors import MissingPathError

    earlier = tmp_path / "checkpoints" / "last.ckpt"
    earlier.parent.mkdir()
    earlier.write_bytes(b"the earlier run")
    cfg = compose_train(["experiment=ft_potsdam_r50_upernet_debug", "start=official_sep",
                         f"start.checkpoint={tmp_path / 'missing.pth'}"], tmp_path)
    with pytest.raises(MissingPathError, match="give a released SEP file"):
        train(cfg)
    assert earlier.read_bytes() == b"the earlier run" and not list(tmp_path.glob("checkpoints-*"))
