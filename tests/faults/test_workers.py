"""Worker processes end with their parent, whatever ends it, kill -9 included (issue 18, defect 1);
and the parent-death hook keeps Lightning's seeding of the workers."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from fault_helpers import alive, children, wait_for
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import DataLoader

from samrs.utils.workers import WorkerInit

# torch's own watchdog ends an idle DataLoader worker within 5 s of its parent's death; one blocked
# on a full result pipe, or a pool worker waiting for tasks, never ends. With the parent-death
# signal they all go at once.
GONE_WITHIN = 3.0


def kill_parent_and_check_workers(proc: subprocess.Popen, workers: int) -> None:
    wait_for(lambda: len(children(proc.pid)) >= workers or proc.poll() is not None, 120, f"{workers} workers starting")
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    started = children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the main process alone, as the OOM killer or a user would
    proc.wait()
    try:
        wait_for(lambda: not any(alive(pid) for pid in started), GONE_WITHIN, "every worker ending")
    finally:
        for pid in started:  # never leave an orphan behind, whatever the outcome
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("labeler", [
    "fault_helpers.SlowFillLabeler",  # polygon_fill in-process: a process pool reads ahead
    # a torch module, as SAM: the predict loop's DataLoader reads ahead (Lightning's start-up: slow)
    pytest.param("module_labeler.ModuleFillLabeler", marks=pytest.mark.slow),
])
def test_label_job_workers_end_when_it_is_killed(dota_root, tmp_path, env, labeler):
    """The label job with 2 workers, killed (kill -9) while its workers have read ahead: 1024 px tiles
    (3 MB each) fill a DataLoader worker's result pipe, which then blocks it forever without the hook."""
    command = [sys.executable, "-m", "samrs.label", "source=dota", f"source.root={dota_root}", "labeler=polygon_fill",
               f"labeler._target_={labeler}", "+labeler.delay=60", f"output_dir={tmp_path / 'out'}",
               "num_workers=2", "progress=false", "extras.print_config=false", "trainer.accelerator=cpu"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        kill_parent_and_check_workers(proc, workers=2)
    finally:
        if proc.poll() is None:
            proc.kill()


class Draws:
    """Random numbers drawn in the worker: what the worker seeding decides."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()


def draws(worker_init_fn) -> list:
    L.seed_everything(7, workers=True)
    return list(DataLoader(Draws(), batch_size=None, num_workers=2, worker_init_fn=worker_init_fn))


def test_worker_init_keeps_lightnings_worker_seeding():
    """Lightning adds its worker seeding only to loaders without a worker_init_fn; ours runs it."""
    ours = draws(WorkerInit())
    assert ours == draws(partial(pl_worker_init_function, rank=0))  # what Lightning would have added
    assert len({d[1] for d in ours}) == len(ours)  # numpy differs between workers and items


def test_every_training_and_validation_loader_has_the_hook(generated_subsets, tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from samrs.utils.hydra import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["data=sota", f"paths.data_dir={tmp_path}", "data.num_workers=0",
                                          f"data.subsets.sota.root={generated_subsets['sota']}", "data.batch_size=2"])
    module = instantiate(cfg.data)
    module.prepare_data()
    module.setup("fit")
    loaders = [module.train_dataloader(), *module.val_dataloader()]
    assert all(isinstance(loader.worker_init_fn, WorkerInit) for loader in loaders)
