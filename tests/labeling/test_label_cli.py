"""python -m samrs.label end to end: kill -9 and resume with the same command; DDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labeljob_helpers import HERE, TILING, TILING_ARGS, dota_source, expected_tiles, instances, mtimes, recorded, run_job

pytestmark = pytest.mark.slow


def label_command(dota_root: Path, out: Path, log: Path, *extra: str) -> list[str]:
    """The documented command, with polygon_fill swapped for its recording twin."""
    return [sys.executable, "-m", "samrs.label", "source=dota", f"source.root={dota_root}", "labeler=polygon_fill",
            "labeler._target_=labeljob_helpers.RecordingLabeler", f"+labeler.log={log}", f"output_dir={out}",
            *TILING_ARGS, "extras.print_config=false", "progress=false", *extra]


def environment(tmp_path: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "SAMRS_ROOT": str(tmp_path)}  # Hydra's logs go to tmp_path


def check_complete(out: Path, names: list[str]) -> None:
    files = [Path(i["file_name"]).stem for i in instances(out)["images"]]
    assert sorted(files) == names  # every image exactly once
    assert sorted(p.stem for p in (out / "images").iterdir()) == names
    assert not list(out.rglob(".*.tmp*"))  # no partial file left
    assert json.loads((out / "report.json").read_text())["counts"]["images"] == len(names)


def test_a_killed_run_resumes_with_the_same_command(dota_root, tmp_path):
    out, log = tmp_path / "sota", tmp_path / "labeled.txt"
    names = sorted(expected_tiles(dota_source(dota_root), TILING))
    command = label_command(dota_root, out, log, "+labeler.delay=0.25", "num_workers=1")
    env = environment(tmp_path)
    with open(tmp_path / "first.log", "w") as output:
        run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT,
                               start_new_session=True)
        deadline = time.monotonic() + 300
        while len(mtimes(out / ".samrs_parts")) < 8:
            assert run.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the run wrote nothing in 300 s"
            time.sleep(0.1)
        os.killpg(run.pid, signal.SIGKILL)  # the run and its DataLoader worker
        run.wait()
    done = {p.stem for p in (out / ".samrs_parts").iterdir()}
    assert 8 <= len(done) < len(names) and not (out / "instances.json").exists()
    kept = {f: mtimes(out / f) for f in ("images", "labels", ".samrs_parts")}
    first = len(recorded(log))
    (out / "images" / ".P0000__256__0___0.a1b2c3.tmp.png").write_bytes(b"\x89PNG cut short")  # as kill -9 leaves

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    check_complete(out, names)
    for folder, times in kept.items():
        now = mtimes(out / folder)
        rewritten = [n for n, t in times.items() if Path(n).stem in done and now[n] != t]
        assert not rewritten, f"complete files rewritten in {folder}: {rewritten}"
    relabeled = {name for _, name in recorded(log)[first:]}
    assert relabeled == set(names) - done  # what was complete is not labeled again
    assert re.search(r"removed \d+ partial files", again.stderr)  # ours, and any the kill left
    assert f"labeled {len(names)} images" in again.stdout


def test_ddp_on_two_cpu_processes_labels_each_image_once(dota_root, tmp_path):
    """A 2-process DDP run (gloo) that resumes a 1-process run: each missing image is labeled once."""
    out, log = tmp_path / "sota", tmp_path / "labeled.txt"
    names = sorted(expected_tiles(dota_source(dota_root), TILING))
    run_job(dota_source(dota_root), out)
    missing = names[::3]
    for name in missing:
        (out / ".samrs_parts" / f"{name}.json").unlink()
    (out / "instances.json").unlink()
    kept = mtimes(out / ".samrs_parts")

    # strategy ddp (as on GPUs): rank 1 is the same command started again by Lightning
    command = label_command(dota_root, out, log, "trainer=ddp_cpu", "trainer.devices=2",
                            "num_workers=0")
    run = subprocess.run(command, cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    calls = recorded(log)
    assert sorted(name for _, name in calls) == missing  # each missing image once, nothing else
    assert {rank for rank, _ in calls} == {"0", "1"}  # both processes labeled
    check_complete(out, names)
    now = mtimes(out / ".samrs_parts")
    assert all(now[n] == t for n, t in kept.items())
    assert run.stdout.count(f"labeled {len(names)} images") == 1  # rank zero alone finalizes


def test_ddp_with_fewer_source_images_than_processes(dota_root, tmp_path):
    """One source image on 2 processes: rank 1 gets a placeholder item, labels nothing and still joins
    the end (Lightning's predict sampler refuses a rank without items)."""
    root = tmp_path / "DOTA"
    for folder, suffix in (("images", ".png"), ("labelTxt", ".txt")):
        (root / "train" / folder).mkdir(parents=True)
        shutil.copy(dota_root / "train" / folder / f"P0000{suffix}", root / "train" / folder)
    out, log = tmp_path / "sota", tmp_path / "labeled.txt"
    names = sorted(expected_tiles(dota_source(root), TILING))
    command = label_command(root, out, log, "trainer=ddp_cpu", "trainer.strategy=ddp", "trainer.devices=2",
                            "num_workers=0")
    run = subprocess.run(command, cwd=tmp_path, env=environment(tmp_path), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(recorded(log)) == [("0", name) for name in names]
    check_complete(out, names)
    assert {p.stem for p in out.glob(".samrs_problems/*")} <= {"P0000"}  # nothing stored for the placeholder
