"""Proportional multi-subset batches (DESIGN.md, pre-training): B_i ~ L_i / sum(L) * B."""

from __future__ import annotations

from typing import Mapping


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
