"""Helpers of the fault tests, importable by name (conftest puts this folder on sys.path; subprocess
runs get it through PYTHONPATH). Nothing here imports torch or Lightning."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from samrs.labeling.fill import PolygonFillLabeler

HERE = Path(__file__).resolve().parent


class SlowFillLabeler(PolygonFillLabeler):
    """polygon_fill that takes `delay` seconds per batch (a job that is still running when killed)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def label(self, images, records):
        time.sleep(self.delay)
        return super().label(images, records)


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment for a job: this folder importable, logs under tmp_path, no
    HYDRA_FULL_ERROR inherited."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return {**env, "PYTHONPATH": path, "SAMRS_ROOT": str(tmp_path), **extra}


def job(module: str, *args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m <module> args...`, its output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not yet reaped by whoever adopted it, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def wait_for(condition, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(poll)
