"""Worker processes that end with the process that started them, however it ends (kill -9 too).

A killed parent runs no cleanup, and its workers can block forever: a DataLoader worker whose
result queue is full waits on a pipe nobody reads, a Pool worker waits for the next task. Every
DataLoader and process pool of samrs starts its workers through `WorkerInit`, which

- on Linux asks the kernel to SIGKILL the worker when its parent dies (prctl PR_SET_PDEATHSIG; with
  a forkserver the parent is the server, which ends with the process that started it),
- elsewhere (or if prctl fails) polls the process that built it from a daemon thread,
- and ends the worker at once if that process is already gone (it died before the request),

then runs what the worker should run anyway: Lightning's worker seeding when
`seed_everything(workers=True)` asked for it (Lightning adds its own worker_init_fn only to loaders
that have none), and an optional further initializer.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 1.0


def process_alive(pid: int) -> bool:
    """Whether process `pid` runs; a zombie (ended, not yet reaped) does not."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): signal 0 only asks whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True


def _exit_if_orphaned(parent: int) -> None:
    """End this worker when `parent` is gone. Its parent process may be another one than the process
    that built the loader (a forkserver starts the workers of Python 3.14's default context)."""
    if os.getppid() != parent and not process_alive(parent):
        os._exit(1)


def _poll_parent(parent: int) -> None:
    def watch() -> None:
        while True:
            _exit_if_orphaned(parent)
            time.sleep(POLL_SECONDS)

    threading.Thread(target=watch, name="samrs-parent-watch", daemon=True).start()


def die_with_parent(parent: int) -> None:
    """Make this process end when process `parent` (the one that started it) ends."""
    requested = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            requested = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            requested = False
    if not requested:
        _poll_parent(parent)
    _exit_if_orphaned(parent)  # the parent died before the request: nobody would send the signal


class WorkerInit:
    """A DataLoader `worker_init_fn` or a Pool `initializer`; build it in the process that starts
    the workers (it records that process as their parent). `then(*args)` runs last in each worker."""

    def __init__(self, then: Callable[..., Any] | None = None, *args: Any) -> None:
        self.parent = os.getpid()
        self.then, self.args = then, args

    def __call__(self, worker_id: int | None = None) -> None:
        die_with_parent(self.parent)
        if worker_id is not None and os.environ.get("PL_SEED_WORKERS") == "1":
            # what Lightning would have added itself (rank: the one the worker inherited)
            from lightning.fabric.utilities.seed import pl_worker_init_function

            pl_worker_init_function(worker_id)
        if self.then is not None:
            self.then(*self.args)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
