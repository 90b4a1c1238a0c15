"""The paired interval, the detectable effect and the verdicts on cases whose answer is known."""
import numpy as np
import pytest

from autoemb_core.stats import (CONTRADICTED, INCONCLUSIVE, REPRODUCED, SMALLER, claim, mde, paired_interval, seeds_needed,
                                t_cdf, t_quantile, verdict)


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


def test_mde_matches_the_formula_from_the_tables():
    # t_{0.975, 4} = 2.7764, t_{0.8, 4} = 0.9410
    assert mde(1.0, 5) == pytest.approx((2.7764 + 0.9410) / np.sqrt(5), abs=1e-3)
    assert mde(2.0, 5) == pytest.approx(2 * mde(1.0, 5))
    assert np.isnan(mde(1.0, 1))


@pytest.mark.parametrize("n", [5, 10])
def test_an_effect_of_one_mde_is_detected_about_80_percent_of_the_time(n):
    rng = np.random.default_rng(1)
    effect = mde(1.0, n)
    detected = sum(paired_interval(rng.normal(effect, 1, n), np.zeros(n))["low"] > 0 for _ in range(4000))
    assert 0.74 < detected / 4000 < 0.84  # (t_a + t_power) is the usual approximation of the noncentral t


def test_seeds_needed_is_the_smallest_that_is_enough():
    for effect, std in ((0.5, 1.0), (0.01, 0.003), (2.0, 0.1)):
        n = seeds_needed(effect, std)
        assert mde(std, n) <= effect
        assert n == 2 or mde(std, n - 1) > effect
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(1e-9, 1.0) is None


@pytest.mark.parametrize("low, high, paper, expected", [
    (0.1, 0.3, None, REPRODUCED),
    (-0.3, -0.1, None, CONTRADICTED),
    (-0.3, -0.1, 0.2, CONTRADICTED),  # against the paper: not merely smaller
    (-0.1, 0.3, None, INCONCLUSIVE),
    (0.1, 0.3, 0.2, REPRODUCED),  # the paper's effect is inside the interval
    (0.1, 0.3, 0.05, REPRODUCED),  # larger than the paper's
    (0.01, 0.03, 0.2, SMALLER),  # real, but wholly below the paper's
    (-0.01, 0.03, 0.2, SMALLER),  # wholly below the paper's, even though it straddles 0
    (-0.01, 0.3, 0.2, INCONCLUSIVE),
    (float("nan"), float("nan"), 0.2, INCONCLUSIVE),
])
def test_verdicts(low, high, paper, expected):
    assert verdict(low, high, paper) == expected


def test_claim_on_constructed_effects():
    rng = np.random.default_rng(2)
    clear = claim(0.05 + rng.normal(0, 0.001, 5))
    assert clear["verdict"] == REPRODUCED and clear["ci_low"] < 0.05 < clear["ci_high"] and clear["n_seeds"] == 5
    assert claim(-0.05 + rng.normal(0, 0.001, 5))["verdict"] == CONTRADICTED
    assert claim([-0.01, 0.01, -0.01, 0.01, 0.0])["verdict"] == INCONCLUSIVE
    small = claim(0.001 + rng.normal(0, 0.0001, 5), paper_effect=0.02)
    assert small["verdict"] == SMALLER and small["paper_effect"] == 0.02
    assert np.isnan(claim([0.3])["ci_low"]) and claim([0.3])["verdict"] == INCONCLUSIVE
