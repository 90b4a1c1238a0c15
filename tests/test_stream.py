"""Causality of the streaming bookkeeping: split, batches, popularity and validation sampling."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import autoemb_core as ae


def brute_force_popularity(ids, batches):
    out = np.empty(len(ids), dtype=np.int64)
    for start, stop, _ in batches:
        for p in range(start, stop):
            out[p] = int(np.sum(ids[:start] == ids[p]))
    return out


def test_batches_cover_the_stream_and_respect_the_split():
    b = ae.make_batches(2345, batch_size=500, offline_fraction=0.7)
    assert b.split == 1642
    assert b.start.tolist() == [0, 500, 1000, 1500, 1642, 2142]
    assert b.stop.tolist() == [500, 1000, 1500, 1642, 2142, 2345]
    assert b.online.tolist() == [False, False, False, False, True, True]
    assert list(b)[4] == (1642, 2142, True)
    assert b.batch_of(np.array([0, 499, 500, 1641, 1642, 2344])).tolist() == [0, 0, 1, 3, 4, 5]


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(batch_size=2.5), dict(offline_fraction=1.5)])
def test_bad_batch_arguments(bad):
    with pytest.raises(ae.DataError):
        ae.make_batches(100, **bad)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=80), st.integers(1, 9), st.floats(0, 1))
def test_popularity_counts_only_strictly_earlier_batches(ids, batch_size, fraction):
    ids = np.array(ids, dtype=np.int64)
    b = ae.make_batches(len(ids), batch_size, fraction)
    assert ae.popularity_before_batch(ids, b).tolist() == brute_force_popularity(ids, b).tolist()


def test_popularity_ignores_the_future_and_batch_mates():
    ids = np.array([3, 3, 3, 3, 3, 3])
    b = ae.make_batches(6, batch_size=2, offline_fraction=0.0)
    assert ae.popularity_before_batch(ids, b).tolist() == [0, 0, 2, 2, 4, 4]
    future = ids.copy()
    future[4:] = 9  # changing the future leaves the past untouched
    assert ae.popularity_before_batch(future, b)[:4].tolist() == [0, 0, 2, 2]


def test_validation_sample_is_drawn_from_the_past_only():
    b = ae.make_batches(5000, batch_size=500)
    rng = np.random.default_rng(0)
    assert len(ae.sample_validation(rng, b, 0, 500)) == 0
    for index in range(1, len(b)):
        sample = ae.sample_validation(rng, b, index, 500)
        assert len(sample) == 500 and sample.min() >= 0 and sample.max() < b.start[index]
    sample = ae.sample_validation(rng, b, 7, 20000)
    assert sample.max() > 0.95 * b.start[7]  # uniform over the whole past, not just recent
    assert np.histogram(sample, bins=7, range=(0, b.start[7]))[0].min() > 2400
    prev = ae.sample_validation(rng, b, 3, 500, mode="previous")
    assert prev.tolist() == list(range(1000, 1500))
    with pytest.raises(ae.DataError):
        ae.sample_validation(rng, b, 3, 10, mode="future")
