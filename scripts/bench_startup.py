"""Start-up of the label job: wall time and peak memory of a one-image polygon_fill run.

python scripts/bench_startup.py [--rounds 3] [--baseline-rev REV]

Runs `python -m samrs.label source=dota ... labeler=polygon_fill` on one generated 1024 x 1024 DOTA
scene (one tile), from process start to exit, against a baseline measured in the same invocation:

- default: the same command with the Lightning predict loop forced (what every label run did before
  model-free labelers ran in-process: torch, Lightning and DataLoader workers);
- `--baseline-rev REV`: the command as the package at git revision REV runs it (e.g. the commit
  before the change), exported with `git archive` into a temporary folder.

Peak memory is the largest resident set of any process of the run (os.wait4). Rounds alternate
between the two, and the medians are compared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# samrs.label with trainer_factory always giving the Lightning Trainer: the predict loop for polygon_fill.
FORCED_LIGHTNING = """
import sys
import hydra
import samrs.label as job
job.trainer_factory = lambda trainer_cfg, labeler: hydra.utils.instantiate(trainer_cfg, _partial_=True)
sys.argv = ["samrs.label", *sys.argv[1:]]
job.main()
"""
CLI = "import runpy, sys; sys.argv = ['samrs.label', *sys.argv[1:]]; runpy.run_module('samrs.label', run_name='__main__')"


def measure(code: str, args: list[str], pythonpath: Path, cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak MiB) of `python -c code args`, with samrs imported from
    `pythonpath`. CPU time (user + system, its workers included) does not grow with the load other
    jobs put on the machine; wall time does."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "SAMRS_ROOT": str(cwd)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the run failed:\n{proc.stderr.read().decode()[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux: KiB


def export_revision(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=None, help="git revision whose label job is the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "samrs.scenes", "--format", "dota", "--out", str(tmp / "data"),
                        "--count", "1", "--size", "1024"], check=True, env=env, capture_output=True)
        if args.baseline_rev:
            baseline = ("baseline: samrs at " + args.baseline_rev, CLI, export_revision(args.baseline_rev,
                                                                                      Path(tempfile.mkdtemp(dir=tmp))))
        else:
            baseline = ("baseline: Lightning predict loop", FORCED_LIGHTNING, REPO)
        runs = [baseline, ("samrs: in-process loop", CLI, REPO)]
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in runs}
        for _ in range(args.rounds):
            for name, code, path in runs:
                out = tmp / f"out-{len(results[name])}-{abs(hash(name))}"
                label_args = ["source=dota", f"source.root={tmp / 'data' / 'DOTA'}", "labeler=polygon_fill",
                              f"output_dir={out}", "progress=false", "extras.print_config=false"]
                results[name].append(measure(code, label_args, path, tmp))
        print(f"one-image polygon_fill run (1024 x 1024, 1 tile), median of {args.rounds} rounds, "
              f"{len(os.sched_getaffinity(0))} usable cores")
        print("| run | wall time | CPU time | peak RSS |\n|---|---:|---:|---:|")
        medians = {}
        for name, values in results.items():
            medians[name] = [statistics.median(v[k] for v in values) for k in range(3)]
            wall, cpu, rss = medians[name]
            print(f"| {name} | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MiB |")
        base, ours = medians[runs[0][0]], medians[runs[1][0]]
        print(f"ratio: {base[0] / ours[0]:.1f}x less wall time, {base[1] / ours[1]:.1f}x less CPU time, "
              f"{base[2] / ours[2]:.1f}x less memory")


if __name__ == "__main__":
    main()
