"""scripts/gpu_benchmarks.sh is wired: both scripts parse, every benchmark it runs exists and accepts the
flags it passes, in the GPU run and in the CPU smoke run, and the GPU steps fit the run's deadline.

The run itself needs a GPU (or minutes of CPU in SMOKE mode): it is not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_benchmarks.sh"
STEPS = {"sam", "train_swin_t", "train_r50_upernet", "train_vit_b", "backbones", "mask2former", "mae", "instance",
         "sam_family"}


def dry_run(smoke: bool) -> list[tuple[str, int, str, list[str]]]:
    """(step, timeout, script, flags) of every step the script would run."""
    env = {k: v for k, v in os.environ.items() if k not in ("STEPS", "SMOKE")} | {"DRY_RUN": "1"}
    if smoke:
        env["SMOKE"] = "1"
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True).stdout
    steps = []
    for line in out.splitlines():
        name, limit, script, *args = line.split()
        steps.append((name, int(limit), script, [a for a in args if a.startswith("--")]))
    return steps


@cache
def help_text(script: str) -> str:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / script), "--help"], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, f"{script} --help failed:\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.mark.parametrize("name", ["gpu_benchmarks.sh", "gpu_wheels.sh"])
def test_scripts_parse(name):
    done = subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("smoke", [False, True], ids=["gpu", "smoke"])
def test_every_step_exists_and_accepts_its_flags(smoke):
    steps = dry_run(smoke)
    assert {name for name, *_ in steps} == STEPS and len(steps) == len(STEPS)
    for name, _, script, flags in steps:
        assert (ROOT / script).is_file(), f"{name}: {script} does not exist"
        assert "--json" in flags, f"{name}: its figures must go to a JSON file"
        text = help_text(script)
        unknown = [f for f in flags if not re.search(rf"{re.escape(f)}(?![\w-])", text)]
        assert not unknown, f"{name}: {script} --help does not list {unknown}"


def test_gpu_steps_fit_the_deadline():
    """The GPU steps' timeouts add up to less than the deadline after which no step starts (< 8 minutes)."""
    deadline = int(re.search(r"DEADLINE=\$\{DEADLINE:-(\d+)\}; fi", SCRIPT.read_text())[1])
    assert deadline < 8 * 60
    assert sum(limit for _, limit, _, _ in dry_run(smoke=False)) <= deadline


def test_requirements_are_pinned_and_exclude_torch():
    lines = [line.split("#")[0].strip() for line in (ROOT / "scripts" / "gpu_requirements.txt").read_text().splitlines()]
    pins = [line for line in lines if line]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^\s]*", p) for p in pins), pins
    names = {p.split("==")[0].lower() for p in pins}
    assert not names & {"torch", "torchvision", "triton"}
    assert len(names) == len(pins), "one version of each package"
