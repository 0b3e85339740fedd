"""Proportional batch sizes, the multi-subset sampler (passes, DDP shards) and the collate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from samrs.data.batching import (
    ProportionalSampler,
    ShardSampler,
    collate_by_subset,
    epoch_steps,
    proportional_batch_sizes,
)

SAMRS_SIZES = {"sota": 17480, "sior": 11725, "fast": 64147}  # training images of the release


def test_paper_batch_split():
    assert proportional_batch_sizes(96, SAMRS_SIZES) == {"sota": 18, "sior": 12, "fast": 66}
    # the official int() truncation gives SIOR nothing below B = 8; here every subset gets one
    assert proportional_batch_sizes(6, SAMRS_SIZES) == {"sota": 1, "sior": 1, "fast": 4}


@pytest.mark.parametrize("seed", range(40))
def test_batch_sizes_sum_to_b_none_zero_and_close_to_proportional(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(1, 7))
    sizes = {f"s{i}": int(n) for i, n in enumerate(rng.integers(1, 100_000, count))}
    for batch in sorted({count, count + 1, int(rng.integers(count, 300)), 96}):
        out = proportional_batch_sizes(batch, sizes)
        assert list(out) == list(sizes)
        assert sum(out.values()) == batch and min(out.values()) >= 1
        exact = {k: n / sum(sizes.values()) * batch for k, n in sizes.items()}
        if min(exact.values()) >= 1:  # nobody lifted to the minimum: plain largest remainders
            assert all(abs(out[k] - exact[k]) < 1 for k in sizes)
            assert all(out[k] in (int(exact[k]), int(exact[k]) + 1) for k in sizes)


def test_batch_smaller_than_subset_count_is_a_clear_error():
    with pytest.raises(ValueError, match="batch size 2 is smaller than the number of subsets \\(3\\)"):
        proportional_batch_sizes(2, SAMRS_SIZES)
    with pytest.raises(ValueError, match="without training samples: sior"):
        proportional_batch_sizes(8, {"sota": 5, "sior": 0})


def draws(sampler: ProportionalSampler, epochs: int) -> list[np.ndarray]:
    """Per epoch, the sampler's indices shaped (steps, batch)."""
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out.append(np.array(list(sampler)).reshape(sampler.steps, sum(sampler.batch_sizes)))
    return out


CASES = [([50, 47, 45], [8, 8, 8], 1), ([13, 200, 31], [1, 12, 3], 2), ([7, 9], [2, 3], 2), ([100], [16], 3)]


@pytest.mark.parametrize("sizes,batch_sizes,world", CASES)
def test_each_step_is_one_proportional_batch_from_each_subset(sizes, batch_sizes, world):
    offsets = np.cumsum([0] + sizes)
    steps = epoch_steps(sizes, sum(batch_sizes), world)
    sampler = ProportionalSampler(sizes, batch_sizes, steps, world, world - 1, seed=3)
    assert len(sampler) == steps * sum(batch_sizes)
    for epoch in draws(sampler, 2):
        bounds = np.cumsum([0] + batch_sizes)
        for i in range(len(sizes)):
            part = epoch[:, bounds[i]:bounds[i + 1]]
            assert ((part >= offsets[i]) & (part < offsets[i + 1])).all()


@pytest.mark.parametrize("sizes,batch_sizes,world", CASES)
def test_no_sample_repeated_or_lost_within_a_pass_across_ranks(sizes, batch_sizes, world):
    """Interleaving the ranks' steps rebuilds each subset's stream; every pass of it (L consecutive
    draws over all ranks) is a permutation of the subset: no rank repeats another's sample."""
    steps = epoch_steps(sizes, sum(batch_sizes), world)
    epochs = 4
    per_rank = [draws(ProportionalSampler(sizes, batch_sizes, steps, world, r, seed=9), epochs) for r in range(world)]
    offsets, bounds = np.cumsum([0] + sizes), np.cumsum([0] + batch_sizes)
    for i, size in enumerate(sizes):
        stream = []
        for e, step, r in itertools.product(range(epochs), range(steps), range(world)):
            stream.extend((per_rank[r][e][step, bounds[i]:bounds[i + 1]] - offsets[i]).tolist())
        passes = len(stream) // size
        assert passes >= 2
        for k in range(passes):
            chunk = stream[k * size:(k + 1) * size]
            assert sorted(chunk) == list(range(size)), f"subset {i} pass {k} repeats or loses samples"
        assert stream[:size] != stream[size:2 * size]  # each pass is shuffled anew


def test_epochs_continue_the_stream_and_seeds_matter():
    sampler = ProportionalSampler([10, 20], [2, 4], 2, seed=0)
    a, b = draws(sampler, 2)
    assert not np.array_equal(a, b)
    again = draws(ProportionalSampler([10, 20], [2, 4], 2, seed=0), 2)
    assert np.array_equal(again[1], b)
    other = draws(ProportionalSampler([10, 20], [2, 4], 2, seed=1), 1)
    assert not np.array_equal(other[0], a)


def test_epoch_length_covers_all_training_images():
    assert epoch_steps(list(SAMRS_SIZES.values()), 96, 1) == 973
    assert epoch_steps(list(SAMRS_SIZES.values()), 12, 8) == 973
    assert epoch_steps([5], 8, 2) == 1


@pytest.mark.parametrize("size,world", [(10, 3), (7, 2), (3, 4)])
def test_validation_shards_evaluate_every_image_once(size, world):
    shards = [list(ShardSampler(size, world, r)) for r in range(world)]
    assert [len(ShardSampler(size, world, r)) for r in range(world)] == [len(s) for s in shards]
    assert sorted(itertools.chain(*shards)) == list(range(size))


def test_collate_groups_a_step_by_subset():
    samples = [{"image": torch.full((3, 4, 4), float(i)), "mask": torch.zeros(4, 4, dtype=torch.long),
                "name": f"n{i}", "subset": s} for i, s in enumerate(["a", "a", "b", "c", "c", "c"])]
    batch = collate_by_subset(samples)
    assert list(batch) == ["a", "b", "c"]
    assert batch["c"]["image"].shape == (3, 3, 4, 4) and batch["c"]["name"] == ["n3", "n4", "n5"]
    assert batch["b"]["mask"].dtype == torch.long and "subset" not in batch["a"]
