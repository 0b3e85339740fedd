"""The main job end to end, as a user runs it: fast_dev_run, checkpoints, resume, evaluate."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

# Small generated data and one epoch keep each run to seconds.
SMALL = ["experiment=demo", "data.generate.count=10", "data.generate.size=64", "data.train_transform.crop_size=64",
         "data.val_transform.crop_size=64", "data.batch_size=6", "trainer.max_epochs=1", "trainer.log_every_n_steps=1",
         "extras.print_config=false"]
QUIET = ["callbacks.rich_progress_bar=null", "callbacks.model_summary=null"]


def run(job: str, args: list[str], root: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMRS_ROOT": str(root), "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run([sys.executable, "-m", f"samrs.{job}", *args], capture_output=True, text=True,
                          cwd=root, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_demo_fast_dev_run(tmp_path):
    proc = run("train", [*SMALL, "debug=fdr"], tmp_path)
    assert "fast_dev_run" in proc.stdout + proc.stderr
    assert (tmp_path / "data/demo/SOTA/instances.json").is_file()
    assert not list(tmp_path.rglob("*.ckpt")), "fast_dev_run writes no checkpoint"


def test_debug_limit_runs_on_the_small_generated_data(tmp_path):
    proc = run("train", [*SMALL, "debug=limit"], tmp_path)  # limits of whole batches, not fractions of < 1 batch
    assert "`Trainer.fit` stopped: `max_epochs=1` reached" in proc.stderr
    trainer = yaml.safe_load((tmp_path / "logs/debug/demo/.hydra/config.yaml").read_text())["trainer"]
    assert (trainer["limit_train_batches"], trainer["limit_val_batches"]) == (10, 5)


def _metrics_rows(run_dir: Path) -> list[dict]:
    rows = []
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


@pytest.mark.slow
def test_train_checkpoints_resume_and_evaluate(tmp_path):
    run_dir = tmp_path / "logs/train/demo"
    first = run("train", SMALL + QUIET, tmp_path)
    ckpts = run_dir / "checkpoints"
    assert (ckpts / "last.ckpt").is_file() and list(ckpts.glob("best_*.ckpt"))
    assert "best checkpoint:" in first.stdout + first.stderr
    assert any(r.get("val/mIoU") for r in _metrics_rows(run_dir))
    assert {"train/loss/sota", "train/loss/sior", "train/loss/fast"} <= set(_metrics_rows(run_dir)[0])
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb logs offline without a login"
    step1 = torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"]

    # Resume: the same command with ckpt_path=last continues from the saved step.
    run("train", [*SMALL, *QUIET, "ckpt_path=last", "trainer.max_epochs=2"], tmp_path)
    state = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert state["global_step"] == 2 * step1

    # A fresh run of the same name keeps the earlier checkpoints aside.
    run("train", SMALL + QUIET, tmp_path)
    kept = list(run_dir.glob("checkpoints-*/last.ckpt"))
    assert kept and torch.load(kept[0], weights_only=False)["global_step"] == 2 * step1

    # Evaluate from the run directory alone: model and data come from the checkpoint.
    evaluation = run("evaluate", [f"ckpt_path={run_dir}"], tmp_path)
    printed = evaluation.stdout + evaluation.stderr
    assert "results (val split):" in printed and "fast: mIoU " in printed  # the headline metrics
    metrics = json.loads((tmp_path / "logs/evaluate/demo/metrics.json").read_text())
    assert set(metrics["scores"]) == {"sota", "sior", "fast"}
    assert len(metrics["scores"]["fast"]["IoU"]) == 37
    assert "| mIoU |" in (tmp_path / "logs/evaluate/demo/metrics.md").read_text()


def test_resume_without_a_checkpoint_says_what_to_do(tmp_path):
    proc = run("train", [*SMALL, "ckpt_path=last"], tmp_path, check=False)
    assert proc.returncode != 0
    assert "ckpt_path=last: no checkpoint" in proc.stderr and "leave ckpt_path unset" in proc.stderr


def test_heads_that_disagree_with_the_data_fail_before_training(tmp_path):
    proc = run("train", [*SMALL, "model.net.heads={sota: 18, sior: 20, fast: 36}"], tmp_path, check=False)
    assert proc.returncode != 0 and "does not match the data" in proc.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def test_resume_paths_and_the_error_naming_the_file_looked_for(tmp_path):
    from samrs.utils.runs import resolve_ckpt_path

    run_dir = tmp_path / "logs/train/new"
    run_dir.mkdir(parents=True)  # Hydra creates the directory of a run that has never trained
    with pytest.raises(FileNotFoundError, match=f"no checkpoint at {run_dir / 'checkpoints' / 'last.ckpt'}"):
        resolve_ckpt_path("last", run_dir)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert resolve_ckpt_path("last", run_dir) == str(run_dir / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(str(run_dir), tmp_path) == str(run_dir / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(None, run_dir) is None
