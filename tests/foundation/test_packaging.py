"""The package as installed: console scripts, and configs found from a wheel outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from samrs.utils.hydra import config_dir

JOBS = ("train", "evaluate", "predict", "label", "stats", "label_quality", "quality_table", "finetune_table")


def test_console_scripts_point_at_the_jobs():
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name.startswith("samrs-")}
    assert scripts == {f"samrs-{job.replace('_', '-')}": f"samrs.{job}:main" for job in JOBS}


def test_source_checkout_finds_its_conf(repo_root):
    assert Path(config_dir()) == repo_root / "conf"


@pytest.mark.slow
def test_wheel_ships_the_configs_and_runs_from_them(tmp_path, repo_root):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(repo_root)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("samrs-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    conf_files = {f"samrs/conf/{p.relative_to(repo_root / 'conf').as_posix()}"
                  for p in (repo_root / "conf").rglob("*.yaml")}
    assert conf_files <= names, sorted(conf_files - names)[:5]
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    # From a directory outside the repository, the wheel's copy of samrs comes first on the path.
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-c", "import samrs.utils.hydra as h; print(h.config_dir())"],
                           capture_output=True, text=True, cwd=tmp_path, env=env)
    assert probe.stdout.strip() == str(site / "samrs" / "conf"), probe.stderr
    job = subprocess.run([sys.executable, "-m", "samrs.train", "--cfg", "job", "experiment=demo"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert job.returncode == 0 and "name: demo" in job.stdout, job.stderr
