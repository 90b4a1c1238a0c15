"""The chronological interaction stream every loader returns, its labels, and the data error type."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ClearError(Exception):
    """An error whose message already says what, where and what to do. In a notebook (and so in papermill's
    output) IPython shows :meth:`_render_traceback_` instead of the traceback: the message with its hint, and
    the two lines that matter, the cell's and the one that raised it. The whole traceback is still there:
    ``traceback.print_exception(sys.last_value)``."""

    def _render_traceback_(self) -> list[str]:
        lines = [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]
        frames = [f for f in traceback.extract_tb(self.__traceback__) if "IPython" not in Path(f.filename).parts]
        for label, frame in zip(("cell", "raised by"), frames[:1] + frames[-1:] if len(frames) > 1 else frames):
            where = f"line {frame.lineno}" if label == "cell" else f"{frame.filename}, line {frame.lineno}"
            lines.append(f"  ({label}: {where}: {(frame.line or '').strip()})")
        return lines


class DataError(ClearError, ValueError):
    """Bad input data: says what was wrong, where (file, line) and what to do."""

    def __init__(self, reason: str, path=None, line: int | None = None, hint: str | None = None):
        self.reason, self.path, self.line, self.hint = reason, path, line, hint
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + reason + (f"\n  -> {hint}" if hint else ""))


@dataclass
class Interactions:
    """A chronological stream of (user, item, rating, timestamp) interactions.

    Ids are remapped to ``0..n-1`` in order of first appearance in time; ``raw_user_ids[u]`` and
    ``raw_item_ids[i]`` give the original ids back. Sorted by timestamp, stable on ties (file order).
    """

    user: np.ndarray  # int64
    item: np.ndarray  # int64
    rating: np.ndarray  # float32, original scale
    timestamp: np.ndarray  # int64 seconds
    raw_user_ids: np.ndarray
    raw_item_ids: np.ndarray
    name: str = "interactions"
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.raw_user_ids)

    @property
    def n_items(self) -> int:
        return len(self.raw_item_ids)

    def __len__(self) -> int:
        return len(self.user)

    def __repr__(self) -> str:
        return (f"Interactions(name={self.name!r}, n={len(self):,}, n_users={self.n_users:,}, "
                f"n_items={self.n_items:,})")

    def head(self, n: int) -> "Interactions":
        """The first ``n`` interactions in time, with ids restricted to those that appear in them."""
        if n >= len(self):
            return self
        n_users = int(self.user[:n].max()) + 1 if n else 0
        n_items = int(self.item[:n].max()) + 1 if n else 0
        return Interactions(self.user[:n], self.item[:n], self.rating[:n], self.timestamp[:n],
                            self.raw_user_ids[:n_users], self.raw_item_ids[:n_items], self.name,
                            dict(self.meta, truncated_to=n))

    def summary(self) -> dict:
        """Sizes, density, time span, rating histogram and popularity skew, as a flat dict."""
        n = len(self)
        user_counts = np.bincount(self.user, minlength=self.n_users)
        item_counts = np.bincount(self.item, minlength=self.n_items)
        values, counts = np.unique(self.rating, return_counts=True)
        span = (int(self.timestamp[0]), int(self.timestamp[-1])) if n else (0, 0)
        return {
            "name": self.name,
            "interactions": n,
            "users": self.n_users,
            "items": self.n_items,
            "density": n / max(1, self.n_users * self.n_items),
            "first": str(np.datetime64(span[0], "s")),
            "last": str(np.datetime64(span[1], "s")),
            "rating_mean": float(self.rating.mean()) if n else float("nan"),
            "rating_histogram": {float(v): int(c) for v, c in zip(values, counts)},
            "positive_fraction": float(binary_label(self.rating).mean()) if n else float("nan"),
            "user_interactions_median": float(np.median(user_counts)) if n else 0.0,
            "user_interactions_max": int(user_counts.max()) if n else 0,
            "item_interactions_median": float(np.median(item_counts)) if n else 0.0,
            "item_interactions_max": int(item_counts.max()) if n else 0,
            "top1pct_items_share": _top_share(item_counts, 0.01),
        }


def _top_share(counts: np.ndarray, fraction: float) -> float:
    if counts.sum() == 0:
        return 0.0
    k = max(1, int(len(counts) * fraction))
    return float(np.sort(counts)[::-1][:k].sum() / counts.sum())


def binary_label(rating: np.ndarray, threshold: float = 3.5) -> np.ndarray:
    """Regression-task label: 1.0 where ``rating > threshold`` (4 and 5 stars by default)."""
    return (np.asarray(rating) > threshold).astype(np.float32)


def class_label(rating: np.ndarray, n_classes: int = 5) -> np.ndarray:
    """Classification-task label ``floor(rating - 0.5)``: {0.5,1}->0, {1.5,2}->1, ..., {4.5,5}->4."""
    label = np.floor(np.asarray(rating, dtype=np.float64) - 0.5).astype(np.int64)
    return np.clip(label, 0, n_classes - 1)


def first_appearance_codes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``0..n-1`` numbered in order of first appearance, and the raw id of each code."""
    ids = np.asarray(ids)
    n = len(ids)
    if ids.dtype.kind not in "iu" or n == 0 or ids.min() < 0 or ids.max() >= max(4 * n, 1 << 20):
        uniques, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        dense = inverse.reshape(-1)
    else:  # O(n) for non-negative integer ids of moderate range: no sort of the stream
        present = np.zeros(int(ids.max()) + 1, dtype=bool)
        present[ids] = True
        uniques = np.flatnonzero(present)
        dense = (np.cumsum(present) - 1)[ids]  # rank among the sorted unique ids
        first = np.full(len(uniques), n, dtype=np.int64)
        np.minimum.at(first, dense, np.arange(n, dtype=np.int64))
    order = np.argsort(first)  # code -> sorted-unique rank
    code = np.empty_like(order)
    code[order] = np.arange(len(order))
    return code[dense].astype(np.int64), uniques[order]


def chronological_order(timestamp: np.ndarray):
    """A stable sort of the timestamps: ``slice(None)`` when already sorted."""
    n = len(timestamp)
    if n < 2 or np.all(timestamp[1:] >= timestamp[:-1]):
        return slice(None)
    span = int(timestamp.max()) - int(timestamp.min())
    if span < np.iinfo(np.int64).max // max(n, 1) - 1:  # ties broken by position: a plain sort is stable
        return np.argsort((timestamp - timestamp.min()) * n + np.arange(n))
    return np.argsort(timestamp, kind="stable")


def from_arrays(user, item, rating, timestamp, name: str, meta: dict | None = None) -> Interactions:
    """Sort raw columns chronologically (stable on ties) and remap ids by first appearance."""
    timestamp = np.asarray(timestamp, dtype=np.int64)
    order = chronological_order(timestamp)
    users, raw_users = first_appearance_codes(np.asarray(user)[order])
    items, raw_items = first_appearance_codes(np.asarray(item)[order])
    return Interactions(users, items, np.asarray(rating, dtype=np.float32)[order], timestamp[order],
                        raw_users, raw_items, name, dict(meta or {}))
