"""The paired interval on cases whose answer is known."""
import numpy as np
import pytest

from autoemb_core.stats import paired_interval, t_cdf, t_quantile


@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (1000, 1.9623)])
def test_t_quantile_matches_the_tables(df, q):
    assert t_quantile(0.975, df) == pytest.approx(q, abs=2e-4)
    assert t_quantile(0.025, df) == pytest.approx(-q, abs=2e-4)


def test_t_cdf_of_one_degree_is_the_cauchy_distribution():
    for x in (-3.0, -0.5, 0.0, 0.7, 4.0):
        assert t_cdf(x, 1) == pytest.approx(0.5 + np.arctan(x) / np.pi, abs=1e-8)


def test_paired_interval_of_a_known_sample():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.0]
    r = paired_interval(a, b)
    half = 2.7764 * np.std(a, ddof=1) / np.sqrt(5)
    assert r["mean"] == 3.0 and r["seeds"] == 5
    assert r["low"] == pytest.approx(3.0 - half, abs=1e-3) and r["high"] == pytest.approx(3.0 + half, abs=1e-3)


def test_pairing_removes_the_shared_seed_effect():
    seed_effect = np.array([0.5, -0.3, 0.2, 0.9, -0.6])
    r = paired_interval(seed_effect + 0.01, seed_effect)
    assert r["mean"] == pytest.approx(0.01) and r["high"] - r["low"] == pytest.approx(0, abs=1e-12)


def test_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = sum(r["low"] <= 0.3 <= r["high"] for r in (paired_interval(rng.normal(0.3, 1, 5), np.zeros(5))
                                                       for _ in range(2000)))
    assert 0.93 < hits / 2000 < 0.97


def test_one_seed_has_no_interval():
    r = paired_interval([1.0], [0.5])
    assert r["mean"] == 0.5 and np.isnan(r["low"]) and np.isnan(r["high"])
