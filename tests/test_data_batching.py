"""Proportional batch sizes, the multi-subset sampler (passes, DDP shards) and the collate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from samrs.data.batching import (
    ProportionalSampler,
    ResumableLoader,
    ShardSampler,
    collate_by_subset,
    epoch_steps,
    proportional_batch_sizes,
    rank_shares,
    truncated_batch_sizes,
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


def test_batch_split_needs_one_sample_per_subset_and_process():
    with pytest.raises(ValueError, match=r"batch size per process \(2\) is smaller than the number of subsets"):
        proportional_batch_sizes(2 * 4, SAMRS_SIZES, minimum=4)
    # the global split keeps every process fed: no subset below the number of processes
    assert min(proportional_batch_sizes(3 * 8, SAMRS_SIZES, minimum=8).values()) >= 8


# The paper's 96 as the global batch of 1, 2, 3, 4 and 8 processes; and a global batch whose
# subsets' parts do not divide by the world size.
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("global_batch", [96, 120])
def test_processes_together_take_the_single_process_split(world, global_batch):
    single = proportional_batch_sizes(global_batch, SAMRS_SIZES)
    split = proportional_batch_sizes(global_batch, SAMRS_SIZES, minimum=world)
    assert split == single  # every part is at least the world size here
    shares = rank_shares(list(split.values()), world)
    assert shares.shape == (world, 3)
    assert shares.sum(axis=0).tolist() == list(single.values())  # the global split, exactly
    assert set(shares.sum(axis=1).tolist()) == {global_batch // world}  # one per-process batch size
    assert (shares.max(axis=0) - shares.min(axis=0)).max() <= 1  # ranks differ by one sample at most
    if global_batch == 96:
        assert list(single.values()) == [18, 12, 66]


def test_rank_shares_of_the_issue_examples():
    # 8 x 12 and 4 x 24: each process used to split its own batch (16/16/64, 20/12/64)
    for world in (8, 4):
        split = proportional_batch_sizes(96, SAMRS_SIZES, minimum=world)
        assert rank_shares(list(split.values()), world).sum(axis=0).tolist() == [18, 12, 66]
    # 2/1/8 each, the 2 + 4 + 2 extra samples dealt to the ranks in turn
    assert rank_shares([18, 12, 66], 8).tolist() == [[3, 1, 8], [3, 1, 8], [2, 2, 8], [2, 2, 8],
                                                    [2, 2, 8], [2, 2, 8], [2, 1, 9], [2, 1, 9]]


def draws(sampler: ProportionalSampler, epochs: int, first: int = 0) -> list[np.ndarray]:
    """Per epoch, the sampler's keys shaped (steps, per-process batch, 2): index and stream position."""
    out = []
    for epoch in range(first, first + epochs):
        sampler.set_epoch(epoch)
        out.append(np.array(list(sampler)).reshape(-1, sampler.batch_size, 2))
    return out


# sizes, global batch sizes, world size
CASES = [([50, 47, 45], [8, 8, 8], 1), ([13, 200, 31], [2, 24, 6], 2), ([7, 9], [3, 5], 2), ([100], [48], 3),
         ([40, 30, 90], [5, 4, 12], 3)]


@pytest.mark.parametrize("sizes,global_sizes,world", CASES)
def test_each_step_is_one_proportional_batch_from_each_subset(sizes, global_sizes, world):
    offsets = np.cumsum([0] + sizes)
    steps = epoch_steps(sizes, sum(global_sizes) // world, world)
    for rank in range(world):
        sampler = ProportionalSampler(sizes, global_sizes, steps, world, rank, seed=3)
        assert len(sampler) == steps * sampler.batch_size
        assert sampler.batch_size * world == sum(global_sizes)
        for epoch in draws(sampler, 2):
            assert epoch.shape[0] == steps
            bounds = np.cumsum([0] + sampler.batch_sizes)
            for i in range(len(sizes)):
                part = epoch[:, bounds[i]:bounds[i + 1], 0]
                assert ((part >= offsets[i]) & (part < offsets[i + 1])).all()


def streams(sizes, global_sizes, world, seed, epochs, first=0):
    """Per subset, the (index, position) keys of all ranks, ordered by stream position."""
    steps = epoch_steps(sizes, sum(global_sizes) // world, world)
    keys = [[] for _ in sizes]
    for rank in range(world):
        sampler = ProportionalSampler(sizes, global_sizes, steps, world, rank, seed=seed)
        bounds = np.cumsum([0] + sampler.batch_sizes)
        for epoch in draws(sampler, epochs, first):
            for i in range(len(sizes)):
                keys[i].extend(map(tuple, epoch[:, bounds[i]:bounds[i + 1]].reshape(-1, 2).tolist()))
    return [sorted(k, key=lambda key: key[1]) for k in keys], steps


@pytest.mark.parametrize("sizes,global_sizes,world", CASES)
def test_no_sample_repeated_or_lost_within_a_pass_across_ranks(sizes, global_sizes, world):
    """The ranks' keys together are each subset's stream, position after position; every pass of
    it (L consecutive draws) is a permutation of the subset: no rank repeats another's sample."""
    offsets = np.cumsum([0] + sizes)
    per_subset, steps = streams(sizes, global_sizes, world, seed=9, epochs=4)
    for i, size in enumerate(sizes):
        positions = [p for _, p in per_subset[i]]
        assert positions == list(range(4 * steps * global_sizes[i]))  # every position once
        stream = [index - offsets[i] for index, _ in per_subset[i]]
        passes = len(stream) // size
        assert passes >= 2
        for k in range(passes):
            assert sorted(stream[k * size:(k + 1) * size]) == list(range(size)), f"subset {i} pass {k}"
        assert stream[:size] != stream[size:2 * size]  # each pass is shuffled anew


@pytest.mark.parametrize("world", [2, 3, 4])
def test_processes_draw_what_one_process_with_the_global_batch_draws(world):
    sizes, global_sizes = [40, 30, 90], [5, 4, 15]
    alone, _ = streams(sizes, global_sizes, 1, seed=5, epochs=2)
    together, _ = streams(sizes, global_sizes, world, seed=5, epochs=2)
    assert together == alone


def test_epochs_continue_the_stream_and_seeds_matter():
    sampler = ProportionalSampler([10, 20], [2, 4], 2, seed=0)
    a, b = draws(sampler, 2)
    assert not np.array_equal(a, b)
    again = draws(ProportionalSampler([10, 20], [2, 4], 2, seed=0), 2)
    assert np.array_equal(again[1], b)
    other = draws(ProportionalSampler([10, 20], [2, 4], 2, seed=1), 1)
    assert not np.array_equal(other[0][..., 0], a[..., 0])


@pytest.mark.parametrize("world,rank", [(1, 0), (3, 2)])
def test_resume_starts_right_after_the_consumed_steps(world, rank):
    sizes, global_sizes = [40, 30, 90], [6, 3, 12]
    steps = epoch_steps(sizes, sum(global_sizes) // world, world)
    whole = draws(ProportionalSampler(sizes, global_sizes, steps, world, rank, seed=2), 1, first=1)[0]
    for consumed in (0, 1, steps - 1, steps):
        resumed = ProportionalSampler(sizes, global_sizes, steps, world, rank, seed=2)
        resumed.resume(1, consumed)
        rest = np.array(list(resumed)).reshape(-1, resumed.batch_size, 2)
        assert np.array_equal(rest, whole[consumed:])
        assert not resumed.resuming
        resumed.set_epoch(2)  # the resume applies to one iteration only
        assert len(list(resumed)) == len(resumed)


class Keys(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 30

    def __getitem__(self, key):
        return key


def test_loader_state_is_what_the_loop_consumed_not_what_workers_prefetched():
    data = Keys()
    sampler = ProportionalSampler([10, 20], [2, 4], 5, seed=0)
    loader = ResumableLoader(data, batch_size=sampler.batch_size, sampler=sampler, collate_fn=lambda keys: keys)
    loader.progress = lambda: (2, 5)  # the loop consumed 2 of the 5 batches of epoch 0
    state = loader.state_dict()
    assert (state["epoch"], state["consumed"]) == (0, 2)
    expected = list(loader)[2:]
    fresh = ResumableLoader(data, batch_size=sampler.batch_size, sampler=ProportionalSampler([10, 20], [2, 4], 5, seed=0),
                            collate_fn=lambda keys: keys)
    fresh.load_state_dict(state)
    assert list(fresh) == expected
    # at the end of an epoch the state is the next epoch's beginning
    loader.progress = lambda: (5, 5)
    assert {k: loader.state_dict()[k] for k in ("epoch", "consumed")} == {"epoch": 1, "consumed": 0}


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


def test_official_split_truncates_each_process_share():
    assert truncated_batch_sizes(96, SAMRS_SIZES) == {"sota": 17, "sior": 12, "fast": 65}  # 94 of 96
    assert truncated_batch_sizes(12, SAMRS_SIZES) == {"sota": 2, "sior": 1, "fast": 8}  # x 8 GPUs: 16 / 8 / 64
    with pytest.raises(ValueError, match="int\\(6 x share\\) is 0 for sior"):
        truncated_batch_sizes(6, SAMRS_SIZES)
