"""The label job's model-free path starts without torch or Lightning and writes what the Lightning
loop writes; worker counts never exceed the machine (issue 18, rough edges)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
from fault_helpers import environment
from hydra import compose, initialize_config_dir

from samrs.classes import subset_classes
from samrs.labeling.fill import PolygonFillLabeler
from samrs.labeling.job import run_labeling
from samrs.sources.dota import DotaSource
from samrs.sources.tiling import Tiling
from samrs.utils.hydra import config_dir

PROBE = """
import atexit, sys
atexit.register(lambda: print("imported:", *sorted(m for m in ("torch", "lightning", "timm") if m in sys.modules)))
sys.argv = ["samrs.label", *sys.argv[1:]]
from samrs.label import main
main()
"""


def test_polygon_fill_imports_neither_torch_nor_lightning(dota_root, tmp_path):
    run = subprocess.run([sys.executable, "-c", PROBE, "source=dota", f"source.root={dota_root}",
                          "labeler=polygon_fill", f"output_dir={tmp_path / 'out'}", "progress=false", "num_workers=1"],
                         capture_output=True, text=True, env=environment(tmp_path), cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "labeled 6 images" in run.stdout and run.stdout.strip().splitlines()[-1] == "imported:"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_in_process_loop_writes_what_the_lightning_loop_writes(dota_root, tmp_path):
    source = DotaSource(dota_root, subset_classes("sota"))
    options = dict(tiling=Tiling(size=64, gap=16, min_visible=0.3), progress=False, batch_size=2)
    run_labeling(source, PolygonFillLabeler(), tmp_path / "plain", num_workers=2, **options)
    run_labeling(source, PolygonFillLabeler(), tmp_path / "lightning", num_workers=0, **options,
                 make_trainer=lambda **kw: L.Trainer(accelerator="cpu", devices=1, enable_model_summary=False, **kw))
    plain, lightning = files(tmp_path / "plain"), files(tmp_path / "lightning")
    assert len(plain) > 40 and plain.keys() == lightning.keys()
    assert [name for name in plain if plain[name] != lightning[name]] == []


def test_worker_counts_default_to_the_usable_cores():
    cores = len(os.sched_getaffinity(0))
    with initialize_config_dir(config_dir(), version_base="1.3"):
        label = compose("label", overrides=["source=dota", "source.root=x", "output_dir=y"])
        train = compose("train", overrides=["experiment=sep_swin_t"])
    assert label.num_workers == cores
    assert train.data.num_workers == min(8, cores) and train.data.val_num_workers == min(2, cores)
