"""Proportional multi-subset batches (DESIGN.md, pre-training): B_i ~ L_i / sum(L) * B, the
sampler that composes them (DDP-aware), the epoch length, and the validation shard sampler."""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import DistributedSampler, default_collate


def proportional_batch_sizes(batch_size: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Split `batch_size` over subsets in proportion to their sizes; the parts sum to `batch_size`
    and none is 0 (largest remainder rounding after giving every subset one sample).

    The official code truncates with int(), which drops whole subsets for small B.
    """
    if not sizes:
        raise ValueError("no subsets to split the batch over")
    if any(n <= 0 for n in sizes.values()):
        empty = [k for k, n in sizes.items() if n <= 0]
        raise ValueError(f"subsets without training samples: {', '.join(empty)}")
    if batch_size < len(sizes):
        raise ValueError(
            f"batch size {batch_size} is smaller than the number of subsets ({len(sizes)}): every subset "
            f"needs at least one sample per batch; raise data.batch_size to at least {len(sizes)}"
        )
    total = sum(sizes.values())
    exact = {k: n / total * batch_size for k, n in sizes.items()}
    out = {k: max(1, int(v)) for k, v in exact.items()}
    # Hand out what truncation left, largest fractional part first; take back what the minimum of
    # one added, from the subsets furthest above their exact share.
    while sum(out.values()) < batch_size:
        k = max(exact, key=lambda k: (exact[k] - out[k], k))
        out[k] += 1
    while sum(out.values()) > batch_size:
        k = max((k for k in out if out[k] > 1), key=lambda k: (out[k] - exact[k], k))
        out[k] -= 1
    return out


def epoch_steps(sizes: Sequence[int], batch_size: int, world_size: int) -> int:
    """Steps of one epoch: enough that the whole training data is drawn once, ceil(N / (B * W))."""
    return max(1, math.ceil(sum(sizes) / (batch_size * world_size)))


class ProportionalSampler(DistributedSampler):
    """Indices into a MultiSubsetDataset in the order of proportional multi-subset batches.

    Every `sum(batch_sizes)` consecutive indices are one step: batch_sizes[0] samples of the first
    subset, then batch_sizes[1] of the second, ... Each subset draws from its own endless stream of
    shuffled passes (pass k is a permutation seeded by (seed, subset, k)); a step takes the next
    batch_sizes[i] * num_replicas samples of stream i and gives rank r the r-th share, so ranks never
    share a sample within a pass, and no sample is repeated or skipped within a pass. Epoch e covers
    steps [e * steps, (e + 1) * steps) of these streams: passes run on across epoch boundaries,
    because proportional batch sizes make the subsets' passes end at different steps.

    A DistributedSampler subclass, so Lightning keeps it instead of injecting its own under DDP.
    """

    def __init__(self, sizes: Sequence[int], batch_sizes: Sequence[int], steps: int,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if len(sizes) != len(batch_sizes) or not sizes:
            raise ValueError("one batch size per subset is needed")
        super().__init__(range(sum(sizes)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.sizes, self.batch_sizes, self.steps = list(sizes), list(batch_sizes), steps
        self.offsets = np.cumsum([0] + self.sizes)[:-1].tolist()

    def __len__(self) -> int:
        return self.steps * sum(self.batch_sizes)

    def _pass(self, subset: int, k: int) -> np.ndarray:
        return np.random.default_rng([self.seed, subset, k]).permutation(self.sizes[subset])

    def stream(self, subset: int, start: int, count: int) -> np.ndarray:
        """Stream positions [start, start + count) of `subset`, as indices within the subset."""
        size, out, pos = self.sizes[subset], [], start
        while pos < start + count:
            k, j = divmod(pos, size)
            take = min(size - j, start + count - pos)
            out.append(self._pass(subset, k)[j:j + take])
            pos += take
        return np.concatenate(out)

    def __iter__(self) -> Iterator[int]:
        world = self.num_replicas
        parts = []
        for i, b in enumerate(self.batch_sizes):
            first = self.epoch * self.steps * b * world  # where this epoch starts in stream i
            drawn = self.stream(i, first, self.steps * b * world).reshape(self.steps, world, b)
            parts.append(drawn[:, self.rank, :] + self.offsets[i])
        return iter(np.concatenate(parts, axis=1).ravel().tolist())


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
