"""Resume: a run killed mid-epoch and resumed draws the same samples, augmentations and dropout as
the uninterrupted run (the same losses), continues its CSV and wandb logs, and sweeps keep apart."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import wandb
import yaml
from hydra.core.global_hydra import GlobalHydra

import samrs.train
from samrs.train import train
from samrs.utils.loggers import ContinuedCSVLogger
from tests.test_train_sep import compose_train, data_overrides

# 23 training images, batch 6 (2 per subset): 4 steps per epoch, so step 6 is inside the second
# epoch. Validation every 4 steps; last.ckpt every 3. Logged every step.
ARGS = [
    "experiment=sep_r50_upernet_debug", "extras.print_config=false", "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null", "callbacks.val_images=null", "callbacks.val_tables=null",
    "callbacks.export_pretrained=null", "trainer.num_sanity_val_steps=1", "trainer.limit_val_batches=1",
    "trainer.max_steps=16", "trainer.val_check_interval=4", "trainer.check_val_every_n_epoch=null",
    "trainer.log_every_n_steps=1", "trainer.deterministic=true", "data.val_transform.crop_size=64",
    "callbacks.last_checkpoint.every_n_train_steps=3",
]


class Crash(L.Callback):
    """Kills the run (an exception) once training step `at` has ended."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("killed")


class Drawn(L.Callback):
    """The image names of every training step, by global step."""

    def __init__(self) -> None:
        self.names: dict[int, list[str]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.names[trainer.global_step] = [n for part in batch.values() for n in part["name"]]


def run(out: Path, subsets, monkeypatch, *extra: str, callbacks=()) -> None:
    original = samrs.train.instantiate_callbacks
    monkeypatch.setattr(samrs.train, "instantiate_callbacks", lambda cfg: [*original(cfg), *callbacks])
    try:
        train(compose_train([*ARGS, *data_overrides(subsets), *extra], out))
    finally:
        monkeypatch.setattr(samrs.train, "instantiate_callbacks", original)
        wandb.finish()  # a process runs one job: the next run in this one must not reuse the wandb run


def column(run_dir: Path, key: str) -> dict[int, float]:
    """step -> value of one logged metric, from the run's one CSV (a resumed run continues it)."""
    (path,) = run_dir.glob("csv/version_*/metrics.csv")
    with path.open() as f:
        return {int(r["step"]): float(r[key]) for r in csv.DictReader(f) if r.get(key)}


def wandb_ids(run_dir: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}


@pytest.mark.slow
def test_resumed_run_repeats_the_uninterrupted_run(generated_subsets, tmp_path, monkeypatch):
    """Killed at step 8 of 16, resumed from the step-6 checkpoint (mid-epoch, two DataLoader workers
    prefetching): over the 10 steps after the resume, the same images, losses and learning rates as
    the uninterrupted run, in one CSV, one wandb run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = ["data.num_workers=2", "logger=[csv,wandb]"]
    reference, drawn = tmp_path / "reference", Drawn()
    run(reference, generated_subsets, monkeypatch, *extra, callbacks=[drawn])

    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        run(killed, generated_subsets, monkeypatch, *extra, callbacks=[Crash(at=8)])
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6

    resumed = Drawn()
    with pytest.warns() as warned:
        run(killed, generated_subsets, monkeypatch, *extra, "ckpt_path=last", callbacks=[resumed])
    assert not [w for w in warned if "not resumable" in str(w.message)]
    assert resumed.names == {s: drawn.names[s] for s in range(6, 16)}  # the same images from step 6 on
    got, expected = column(killed, "train/loss"), column(reference, "train/loss")
    assert sorted(got) == list(range(16))  # the interrupted run's rows up to its checkpoint, then the resumed run's
    assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert column(killed, "lr-AdamW/decay") == pytest.approx(column(reference, "lr-AdamW/decay"))
    assert column(killed, "val/mIoU") == pytest.approx(column(reference, "val/mIoU"))
    assert len(wandb_ids(killed)) == 1  # the resumed session continues the interrupted run's id


def test_csv_logger_continues_the_latest_version(tmp_path):
    """Rows the interrupted run logged from the resume step on are dropped, the resumed run appends
    (a new key rewrites the header); without a resume step Lightning's behaviour (a new version)."""
    first = ContinuedCSVLogger(tmp_path, name="csv")
    for step in range(6):
        first.log_metrics({"train/loss": 10.0 - step}, step=step)
    first.save()
    resumed = ContinuedCSVLogger(tmp_path, name="csv", resume_step=4)
    for step in (4, 5, 6):
        resumed.log_metrics({"train/loss": 1.0 * step, "val/mIoU": 0.5}, step=step)
    resumed.save()
    assert column(tmp_path, "train/loss") == {0: 10.0, 1: 9.0, 2: 8.0, 3: 7.0, 4: 4.0, 5: 5.0, 6: 6.0}
    assert column(tmp_path, "val/mIoU") == {4: 0.5, 5: 0.5, 6: 0.5}
    assert ContinuedCSVLogger(tmp_path, name="csv").version == 1


# --- sweeps ----------------------------------------------------------------------------------------

def multirun(root: Path, monkeypatch, *args: str) -> None:
    """`python -m samrs.train -m <args>` in this process; the jobs build data and model but do not train."""
    monkeypatch.setenv("SAMRS_ROOT", str(root))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(sys, "argv", ["samrs-train", "-m", *args, "train=false", "logger=csv",
                                      "extras.print_config=false"])
    GlobalHydra.instance().clear()
    samrs.train.main()


def job_overrides(job: Path) -> list[str]:
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.slow
def test_every_sweep_gets_its_own_directory(tmp_path, monkeypatch):
    sweeps = tmp_path / "logs" / "train" / "multirun"
    multirun(tmp_path, monkeypatch, "experiment=demo", "model.optimizer.lr=1e-3,1e-4")
    (first,) = sweeps.iterdir()
    assert first.name.startswith("demo_") and sorted(p.name for p in first.glob("[0-9]")) == ["0", "1"]
    before = {job.name: job_overrides(job) for job in first.glob("[0-9]")}

    # an unnamed sweep over experiments: one new directory, the first sweep's jobs untouched
    multirun(tmp_path, monkeypatch, "experiment=demo,sep_r50_upernet_debug")
    (second,) = set(sweeps.iterdir()) - {first}
    assert {job.name: job_overrides(job) for job in first.glob("[0-9]")} == before
    assert [job_overrides(second / k)[0] for k in ("0", "1")] == ["experiment=demo", "experiment=sep_r50_upernet_debug"]
    assert not (sweeps.parent / "demo").exists() and not (sweeps / "demo").exists()

    # a named sweep lives at multirun/<name>; the same sweep again (resumed) reuses it, another is refused
    multirun(tmp_path, monkeypatch, "name=grid", "experiment=demo", "model.optimizer.lr=1e-3,1e-4")
    multirun(tmp_path, monkeypatch, "name=grid", "experiment=demo", "model.optimizer.lr=1e-3,1e-4", "ckpt_path=null")
    assert sorted(p.name for p in (sweeps / "grid").glob("[0-9]")) == ["0", "1"]
    with pytest.raises(SystemExit) as refused:
        multirun(tmp_path, monkeypatch, "name=grid", "experiment=demo", "model.optimizer.lr=1e-2,1e-3")
    assert refused.value.code == 2
    assert "model.optimizer.lr=0.001" in job_overrides(sweeps / "grid" / "0")  # not overwritten
    assert len(list(sweeps.iterdir())) == 3
