"""The global random streams of a process (torch, CUDA, numpy, Python), as checkpoint content.

Lightning restores weights, optimiser, schedulers, loops and stateful loaders, but not these
streams, so after a resume dropout and drop-path would draw other numbers than the interrupted run.
The states are kept in plain types and tensors, so a checkpoint still loads with torch's
weights_only unpickler.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def rng_state() -> dict[str, Any]:
    """This process's random states."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "python": {"version": version, "state": list(mt), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned (CUDA streams when this process has as many devices)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    np_state = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
                         "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"]})
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))


def gather_rng_states() -> list[dict[str, Any]]:
    """Every process's random states, by global rank (collective under torch.distributed: every
    rank calls it, as every rank builds a checkpoint in Lightning)."""
    mine = rng_state()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)  # CPU tensors (CUDA states are ByteTensors on the host)
    return everyone


def restore_rng_states(states: list[dict[str, Any]], rank: int) -> None:
    """Restore this rank's entry of `gather_rng_states` (rank modulo their number when the world size changed)."""
    if states:
        set_rng_state(states[rank % len(states)])
