"""The streaming protocol's bookkeeping: the offline/online split, mini-batches, causal popularity and
validation sampling. Everything here only ever looks at interactions strictly before the current batch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .interactions import DataError


@dataclass(frozen=True)
class Batches:
    """Chronological mini-batches ``[start[b], stop[b])``; none straddles the offline/online boundary."""

    start: np.ndarray
    stop: np.ndarray
    online: np.ndarray  # bool per batch
    split: int  # index of the first online interaction

    def __len__(self) -> int:
        return len(self.start)

    def __iter__(self):
        return iter(zip(self.start.tolist(), self.stop.tolist(), self.online.tolist()))

    def batch_of(self, positions: np.ndarray) -> np.ndarray:
        """The batch index that holds each stream position."""
        return np.searchsorted(self.start, positions, side="right") - 1


def make_batches(n: int, batch_size: int = 500, offline_fraction: float = 0.7) -> Batches:
    """Split ``n`` interactions into the offline stage (first ``offline_fraction``) and the online stage,
    each cut into consecutive batches of ``batch_size`` (the last batch of a stage may be smaller)."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= offline_fraction <= 1.0:
        raise DataError(f"offline_fraction must be in [0, 1], got {offline_fraction!r}")
    split = int(round(n * offline_fraction))
    starts = np.concatenate([np.arange(0, split, batch_size), np.arange(split, n, batch_size)]).astype(np.int64)
    stops = np.minimum(np.append(starts[1:], n), np.where(starts < split, split, n))
    return Batches(starts, stops.astype(np.int64), starts >= split, split)


def popularity_before_batch(ids: np.ndarray, batches: Batches) -> np.ndarray:
    """For every position, how many times its id occurred strictly before that position's batch.

    Causal by construction: neither the sample itself, nor its batch-mates, nor the future count.
    Vectorized: occurrences before the position minus occurrences earlier in the same batch.
    """
    ids = np.asarray(ids)
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(ids, kind="stable")  # grouped by id, positions increasing within a group
    sorted_ids = ids[order]
    batch = batches.batch_of(order)
    rank = np.arange(n, dtype=np.int64)
    new_id = np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]
    new_run = new_id | np.r_[True, batch[1:] != batch[:-1]]
    before_position = rank - np.maximum.accumulate(np.where(new_id, rank, 0))
    earlier_in_batch = rank - np.maximum.accumulate(np.where(new_run, rank, 0))
    popularity = np.empty(n, dtype=np.int64)
    popularity[order] = before_position - earlier_in_batch
    return popularity


def sample_validation(rng: np.random.Generator, batches: Batches, index: int, size: int,
                      mode: str = "uniform") -> np.ndarray:
    """Stream positions of a validation mini-batch for batch ``index``, drawn only from the past.

    ``uniform``: ``size`` draws with replacement from all interactions before the batch (the default);
    ``previous``: the previous batch. Empty for the first batch, which has no past.
    """
    start = int(batches.start[index])
    if start == 0:
        return np.zeros(0, dtype=np.int64)
    if mode == "uniform":
        return rng.integers(0, start, size=size, dtype=np.int64)
    if mode == "previous":
        return np.arange(int(batches.start[index - 1]), start, dtype=np.int64)
    raise DataError(f"unknown validation mode {mode!r}", hint="use 'uniform' or 'previous'")
