"""The streaming protocol's bookkeeping: the offline/online split, mini-batches, causal popularity and
validation sampling, the held-out share, and the batch view of unique ids. Everything here only ever looks
at interactions strictly before the current batch."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .interactions import DataError, Interactions, binary_label, class_label


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


def in_batch_counts(ids: np.ndarray, batches: Batches) -> np.ndarray:
    """For every position, how many samples of its batch (itself included) have its id: how much a step on the
    batch moves that id's row, beside the others'."""
    batch = batches.batch_of(np.arange(len(ids)))
    _, inverse, counts = np.unique(batch.astype(np.int64) * (int(ids.max(initial=0)) + 1) + ids, return_inverse=True,
                                   return_counts=True)
    return counts[inverse]


def microbatches(n: int, size: int | None) -> list[tuple[int, int]]:
    """``[lo, hi)`` of the consecutive chunks of ``size`` that a batch of ``n`` training samples is learned in
    (``train_microbatch``); the whole batch where ``size`` is None or at least ``n``."""
    if size is None or size >= n:
        return [(0, n)]
    return [(lo, min(lo + size, n)) for lo in range(0, n, size)]


def holdout_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` stream positions are held out from W's training: each independently with probability
    ``fraction``, drawn from ``seed`` alone, so that every method run with that seed holds out the same ones."""
    if fraction <= 0:
        return np.zeros(n, dtype=bool)
    return np.random.default_rng([seed, 0x401D]).random(n) < fraction


def sample_validation(rng: np.random.Generator, batches: Batches, index: int, size: int,
                      mode: str = "uniform", held: np.ndarray | None = None) -> np.ndarray:
    """Stream positions of a validation mini-batch for batch ``index``, drawn only from the past.

    ``uniform``: ``size`` draws with replacement from all interactions before the batch (the default);
    ``previous``: the previous batch; ``holdout``: ``size`` draws with replacement from the positions before
    the batch that ``held`` (the sorted held-out positions) lists. Empty when the batch has no such past.
    """
    start = int(batches.start[index])
    if start == 0:
        return np.zeros(0, dtype=np.int64)
    if mode == "uniform":
        return rng.integers(0, start, size=size, dtype=np.int64)
    if mode == "previous":
        return np.arange(int(batches.start[index - 1]), start, dtype=np.int64)
    if mode == "holdout":
        past = int(np.searchsorted(held, start))
        if past == 0:
            return np.zeros(0, dtype=np.int64)
        return held[rng.integers(0, past, size=size)].astype(np.int64)
    raise DataError(f"unknown validation mode {mode!r}", hint="use 'uniform', 'previous' or 'holdout'")


@dataclass
class View:
    """Stream positions with their unique ids: every per-id computation runs once per unique id.

    W's rows and Theta's weights are gathered once for ``ids``; a part of the view (the training or the
    validation half of the bilevel step) names its own unique ids by their positions ``local`` in ``ids``."""

    ids: dict  # side -> unique ids (tensor)
    inverse: dict  # side -> per-sample index into this view's unique ids
    counts: dict  # side -> samples per unique id of this view
    target: torch.Tensor
    local: dict | None = None  # side -> positions in ids of this part's unique ids; None: all of ids

    @classmethod
    def of(cls, columns: dict, target: torch.Tensor) -> "View":
        split = {s: torch.unique(c, return_inverse=True, return_counts=True) for s, c in columns.items()}
        return cls(*({s: u[k] for s, u in split.items()} for k in range(3)), target)

    def part(self, lo: int, hi: int) -> "View":
        inner = View.of({s: v[lo:hi] for s, v in self.inverse.items()}, self.target[lo:hi])
        return View(self.ids, inner.inverse, inner.counts, inner.target, inner.ids)

    def chunk(self, lo: int, hi: int) -> "View":
        """A whole view of samples ``lo:hi`` (its own unique ids: a step on it moves no other row)."""
        return self if (lo, hi) == (0, len(self.target)) else \
            View.of({s: self.column(s)[lo:hi] for s in self.ids}, self.target[lo:hi])

    def column(self, side: str) -> torch.Tensor:
        """The per-sample ids of a whole view."""
        return self.ids[side].index_select(0, self.inverse[side])

    def subset(self, keep: torch.Tensor) -> "View":
        """A whole view of the samples where ``keep`` is True."""
        return View.of({s: self.column(s)[keep] for s in self.ids}, self.target[keep])

    @classmethod
    def joined(cls, first: "View", second: "View") -> "View":
        """One whole view of ``first``'s samples followed by ``second``'s (:meth:`part` takes them apart)."""
        return cls.of({s: torch.cat([first.column(s), second.column(s)]) for s in first.ids},
                      torch.cat([first.target, second.target]))

    def gather(self, side: str, table: torch.Tensor | None) -> torch.Tensor | None:
        """This part's rows of ``table``, a tensor with one row per id of ``ids``."""
        if table is None or self.local is None:
            return table
        return table.index_select(0, self.local[side])


class Stream:
    """A dataset as device tensors: user and item ids and the task's labels (float for regression, class
    indices for classification), and views of any of its positions or of any labelled pairs."""

    def __init__(self, data: Interactions, task: str, device, dtype):
        self.task, self.device, self.dtype = task, device, dtype
        self.user, self.item = torch.as_tensor(data.user, device=device), torch.as_tensor(data.item, device=device)
        self.target = self.labels(data.rating)

    def labels(self, rating) -> torch.Tensor:
        regression = self.task == "regression"
        label = binary_label(rating) if regression else class_label(rating)
        return torch.as_tensor(label, device=self.device).to(self.dtype if regression else torch.int64)

    def view(self, positions: torch.Tensor | slice) -> View:
        """The samples at stream ``positions``."""
        return View.of({"user": self.user[positions], "item": self.item[positions]}, self.target[positions])

    def pairs(self, user, item, rating) -> View:
        """Arbitrary (user, item, rating) triples, labelled like the stream (Figure 1's held-out sets)."""
        return View.of({"user": torch.as_tensor(user, device=self.device),
                        "item": torch.as_tensor(item, device=self.device)}, self.labels(rating))
