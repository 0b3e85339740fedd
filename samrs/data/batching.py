"""Proportional multi-subset batches (DESIGN.md, pre-training): B_i ~ L_i / sum(L) * B, each
rank's share of them under DDP, the sampler that composes the steps (DDP-aware, resumable mid-epoch),
the epoch length, and the validation shard sampler."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler, default_collate

from samrs.errors import ConfigError
from samrs.utils.logging import get_logger

log = get_logger(__name__)


def proportional_batch_sizes(batch_size: int, sizes: Mapping[str, int], minimum: int = 1) -> dict[str, int]:
    """Split `batch_size` over subsets in proportion to their sizes; the parts sum to `batch_size`
    and none is below `minimum` (largest remainder rounding after giving every subset `minimum`).

    The official code truncates with int(), which drops whole subsets for small B. Under DDP the
    global batch is split with `minimum` = world size, so that every rank gets every subset.
    """
    if not sizes:
        raise ValueError("no subsets to split the batch over")
    if any(n <= 0 for n in sizes.values()):
        empty = [k for k, n in sizes.items() if n <= 0]
        raise ConfigError(f"subsets without training samples: {', '.join(empty)}")
    if batch_size < len(sizes) * minimum:
        per = f" per process ({batch_size // minimum})" if minimum > 1 else f" {batch_size}"
        raise ConfigError(
            f"batch size{per} is smaller than the number of subsets ({len(sizes)}): every subset "
            f"needs at least one sample per batch; raise data.batch_size to at least {len(sizes)}"
        )
    total = sum(sizes.values())
    exact = {k: n / total * batch_size for k, n in sizes.items()}
    out = {k: max(minimum, int(v)) for k, v in exact.items()}
    # Hand out what truncation left, largest fractional part first; take back what the minimum
    # added, from the subsets furthest above their exact share.
    while sum(out.values()) < batch_size:
        k = max(exact, key=lambda k: (exact[k] - out[k], k))
        out[k] += 1
    while sum(out.values()) > batch_size:
        k = max((k for k in out if out[k] > minimum), key=lambda k: (out[k] - exact[k], k))
        out[k] -= 1
    return out


def truncated_batch_sizes(batch_size: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """The official script's split: int(B * L_i / sum L) for each subset, of each process's batch.
    The parts add up to less than B (96 gives 17 / 12 / 65 with the release sizes); a subset whose
    part truncates to 0 is an error (the official script would build a loader of batch size 0)."""
    total = sum(sizes.values())
    out = {k: int(batch_size * n / total) for k, n in sizes.items()}
    empty = [k for k, b in out.items() if b == 0]
    if empty:
        raise ConfigError(f"data.batch_split=official: int({batch_size} x share) is 0 for {', '.join(empty)}; raise "
                          f"data.batch_size or use data.batch_split=proportional")
    return out


def rank_shares(global_sizes: Sequence[int], world_size: int) -> np.ndarray:
    """(world_size, subsets) array: how many samples of each subset's global mini-batch each rank
    takes. Columns sum to `global_sizes`, every row to sum(global_sizes) / world_size (a DataLoader
    has one batch size), and two ranks differ by at most one sample per subset.

    Each rank takes floor(G_i / W); the G_i mod W extra samples of the subsets are dealt to the
    ranks in turn, continuing with the next subset where the previous stopped, so every rank gets
    the same number of extras.
    """
    sizes = np.asarray(global_sizes, dtype=np.int64)
    if sizes.sum() % world_size:
        raise ValueError(f"a global batch of {int(sizes.sum())} does not split into {world_size} equal per-process batches")
    shares = np.tile(sizes // world_size, (world_size, 1))
    rank = 0
    for i, extra in enumerate(sizes % world_size):
        for _ in range(int(extra)):
            shares[rank, i] += 1
            rank = (rank + 1) % world_size
    return shares


def epoch_steps(sizes: Sequence[int], batch_size: int, world_size: int) -> int:
    """Steps of one epoch: enough that the whole training data is drawn once, ceil(N / (B * W))."""
    return max(1, math.ceil(sum(sizes) / (batch_size * world_size)))


class ProportionalSampler(DistributedSampler):
    """Keys into a MultiSubsetDataset in the order of proportional multi-subset batches.

    `global_batch_sizes` are the subsets' shares of the global batch (all processes together).
    Each subset draws from its own endless stream of shuffled passes (pass k is a permutation seeded
    by (seed, subset, k)); a step takes the next G_i samples of stream i, and rank r takes its
    `rank_shares` slice of them, so the ranks of a step together draw exactly what one process
    with the global batch would, and never share a sample within a pass. On one rank, every
    `batch_size` consecutive keys are one step, subset after subset. Epoch e covers steps
    [e * steps, (e + 1) * steps) of the streams: passes run on across epoch boundaries, because
    proportional batch sizes make the subsets' passes end at different steps.

    A key is (index, draw): the sample's index and its position in its subset's stream, from which
    the dataset seeds the sample's augmentation, so a sample is augmented alike however many
    workers or processes load it, and after a resume. `resume(epoch, steps)` makes the next
    iteration start `steps` steps into `epoch` (a run resumed mid-epoch).

    A DistributedSampler subclass, so Lightning keeps it instead of injecting its own under DDP.
    """

    def __init__(self, sizes: Sequence[int], global_batch_sizes: Sequence[int], steps: int,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if len(sizes) != len(global_batch_sizes) or not sizes:
            raise ValueError("one batch size per subset is needed")
        super().__init__(range(sum(sizes)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.sizes, self.global_batch_sizes, self.steps = list(sizes), list(global_batch_sizes), steps
        self.shares = rank_shares(self.global_batch_sizes, num_replicas)
        self.starts = np.cumsum(self.shares, axis=0) - self.shares  # where each rank's slice of a step begins
        self.batch_sizes = self.shares[rank].tolist()  # this rank's
        self.batch_size = int(sum(self.batch_sizes))
        self.offsets = np.cumsum([0] + self.sizes)[:-1].tolist()
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self.steps * self.batch_size

    def settings(self) -> dict[str, Any]:
        """What fixes the stream positions of a step: a resume is exact only when they are the same."""
        return {"steps": self.steps, "global_batch_sizes": list(self.global_batch_sizes), "sizes": list(self.sizes),
                "seed": self.seed}

    @property
    def resuming(self) -> bool:
        return self._resume is not None

    def resume(self, epoch: int, steps: int) -> None:
        """Start the next iteration `steps` steps into `epoch` (0 <= steps <= self.steps)."""
        if not 0 <= steps <= self.steps:
            raise ValueError(f"cannot resume {steps} steps into an epoch of {self.steps}")
        self.set_epoch(epoch)
        self._resume = (epoch, steps)

    def _pass(self, subset: int, k: int) -> np.ndarray:
        return np.random.default_rng([self.seed, subset, k]).permutation(self.sizes[subset])

    def stream(self, subset: int, start: int, count: int) -> np.ndarray:
        """Stream positions [start, start + count) of `subset`, as indices within the subset."""
        size, out, pos = self.sizes[subset], [np.zeros(0, dtype=np.int64)], start
        while pos < start + count:
            k, j = divmod(pos, size)
            take = min(size - j, start + count - pos)
            out.append(self._pass(subset, k)[j:j + take])
            pos += take
        return np.concatenate(out)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None
        steps = np.arange(skip, self.steps)
        parts = []
        for i, g in enumerate(self.global_batch_sizes):
            share, start = int(self.shares[self.rank, i]), int(self.starts[self.rank, i])
            first = (self.epoch * self.steps + skip) * g  # where the remaining steps begin in stream i
            drawn = self.stream(i, first, len(steps) * g).reshape(len(steps), g)[:, start:start + share]
            draw = ((self.epoch * self.steps + steps) * g)[:, None] + start + np.arange(share)[None, :]
            parts.append(np.stack([drawn + self.offsets[i], draw], axis=-1))
        keys = np.concatenate(parts, axis=1).reshape(-1, 2)
        return iter([(int(index), int(draw)) for index, draw in keys])


class ResumableLoader(DataLoader):
    """The training DataLoader over a ProportionalSampler, resumable mid-epoch by Lightning.

    Lightning stores `state_dict()` of every training loader that has one in its checkpoints and
    hands it back to `load_state_dict` on resume, before it iterates the loader again. The state is
    the sampler's epoch and how many of its batches the training loop had consumed, not how many
    the workers had produced (they prefetch): `progress()` tells (batches consumed, batches per
    epoch), from the trainer's loop progress. The resumed iteration starts right after them.
    """

    progress: Callable[[], tuple[int, int]] | None = None

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        if not isinstance(sampler, ProportionalSampler):  # replaced by Lightning (overfit_batches): nothing to resume
            return {}
        consumed, per_epoch = self.progress() if self.progress else (0, sampler.steps)
        epoch = sampler.epoch
        if consumed >= per_epoch:  # the epoch is over: the next one starts at its beginning
            epoch, consumed = epoch + 1, 0
        return {"epoch": epoch, "consumed": consumed, **sampler.settings()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self.sampler
        if not state or not isinstance(sampler, ProportionalSampler):
            return
        then = {k: state.get(k) for k in sampler.settings()}
        if then != sampler.settings():
            log.warning("resuming with other data or batch settings than the checkpoint's (%s now, %s then): "
                        "the samples drawn are not those the interrupted run would have drawn", sampler.settings(), then)
        sampler.resume(int(state["epoch"]), min(int(state["consumed"]), sampler.steps))


class ShardSampler(DistributedSampler):
    """Rank r takes indices r, r + W, ...: every validation image is evaluated exactly once
    (Lightning's default sampler pads ranks to equal length by repeating images)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False)
        self.size = size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))


def collate_by_subset(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One step's samples -> {subset: collated mini-batch}, subsets in the order they come."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for sample in samples:
        groups.setdefault(sample["subset"], []).append({k: v for k, v in sample.items() if k != "subset"})
    return {subset: default_collate(group) for subset, group in groups.items()}
