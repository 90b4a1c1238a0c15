"""The synthetic streaming generator: sizes, determinism, power laws, arrivals, drift, ratings, capacity."""
import numpy as np
import pytest

from autoemb_core.interactions import DataError
from autoemb_core.synthetic import (PRESETS, SyntheticConfig, capacity_study, generate, ground_truth,
                                    latent_share_by_popularity)


@pytest.fixture(scope="module")
def tiny():
    return generate("synthetic-tiny")


@pytest.fixture(scope="module")
def demo():
    return generate("synthetic")


def _spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _slope(counts, top=0.5):
    """-slope of log(count) on log(rank), over the top ``top`` share of the ranks."""
    c = np.sort(counts)[::-1][: int(top * len(counts))].astype(float)
    return -np.polyfit(np.log(np.arange(1, len(c) + 1)), np.log(c), 1)[0]


def _check_stream(data, config: SyntheticConfig):
    assert len(data) == config.n_interactions
    assert data.n_users == config.n_users and data.n_items == config.n_items
    # every configured id appears; raw ids are the generator's ids
    assert sorted(data.raw_user_ids.tolist()) == list(range(config.n_users))
    assert sorted(data.raw_item_ids.tolist()) == list(range(config.n_items))
    assert np.bincount(data.user).min() >= 1 and np.bincount(data.item).min() >= 1
    assert data.rating.dtype == np.float32 and set(np.unique(data.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert data.timestamp.dtype == np.int64 and np.all(np.diff(data.timestamp) >= 0)
    t0 = config.start_seconds
    assert t0 <= data.timestamp[0] and data.timestamp[-1] < t0 + config.span_days * 86_400


def test_tiny_preset_is_a_valid_stream(tiny):
    _check_stream(tiny, PRESETS["synthetic-tiny"])
    assert tiny.name == "synthetic-tiny" and len(tiny) <= 20_000
    assert tiny.meta["config"]["n_users"] == 500 and len(tiny.meta["rating_thresholds"]) == 4
    span = PRESETS["synthetic-tiny"].span_days * 86_400
    assert tiny.timestamp[-1] - tiny.timestamp[0] > 0.99 * span  # the whole configured span, years


def test_custom_configs_exact_counts():
    for kw in (dict(n_users=50, n_items=40, n_interactions=90, chunk_size=7),  # the minimum size
               dict(n_users=300, n_items=20, n_interactions=5_000, initial_fraction=1.0, drift_periods=3),
               dict(n_users=1, n_items=1, n_interactions=10, drift_periods=10)):
        config = SyntheticConfig(**kw)
        data = generate(config)
        _check_stream(data, config)
        assert data.name == "synthetic-custom"
    assert generate("synthetic-tiny", n_interactions=16_000).name == "synthetic-custom"
    assert generate(PRESETS["synthetic-tiny"]).name == "synthetic-tiny"


def test_deterministic_given_seed_and_independent_of_chunk_size(tiny):
    again = generate("synthetic-tiny", chunk_size=997)
    for key in ("user", "item", "rating", "timestamp", "raw_user_ids", "raw_item_ids"):
        assert np.array_equal(getattr(tiny, key), getattr(again, key))
    other = generate("synthetic-tiny", seed=1)
    assert not np.array_equal(tiny.raw_user_ids[tiny.user], other.raw_user_ids[other.user])
    assert not np.array_equal(tiny.rating, other.rating)
    assert not np.array_equal(tiny.timestamp, other.timestamp)


def test_power_law_slopes_match_the_exponents():
    # Measured on 6 seeds (200k interactions): the top-half slope is s - 0.01 +- 0.005 (caps on the
    # largest ids flatten the head a little), so 0.05 is ten standard deviations and still tells
    # apart exponents 0.2 apart.
    for user_exp, item_exp in ((0.6, 0.9), (0.8, 0.6)):
        data = generate("synthetic", user_exponent=user_exp, item_exponent=item_exp)
        assert _slope(np.bincount(data.user)) == pytest.approx(user_exp, abs=0.05)
        assert _slope(np.bincount(data.item)) == pytest.approx(item_exp, abs=0.05)


def test_new_ids_keep_arriving_in_every_decile(demo):
    config = PRESETS["synthetic"]
    n = len(demo)
    decile = np.arange(n) * 10 // n
    for codes, n_ids in ((demo.user, config.n_users), (demo.item, config.n_items)):
        # codes are numbered by first appearance: a new id is a code above every earlier one
        new = np.r_[True, codes[1:] > np.maximum.accumulate(codes)[:-1]]
        per_decile = np.bincount(decile[new], minlength=10)
        expected = (1 - config.initial_fraction) * n_ids / 10  # uniform arrivals of the later ids
        assert per_decile[1:].min() > 0.6 * expected, per_decile
        assert per_decile[0] < 0.6 * n_ids  # not everything at the start


def test_ids_never_appear_before_their_arrival(tiny):
    truth = ground_truth("synthetic-tiny")
    position = np.arange(len(tiny))
    for codes, raw, side in ((tiny.user, tiny.raw_user_ids, truth.users),
                             (tiny.item, tiny.raw_item_ids, truth.items)):
        first = np.full(len(raw), len(tiny))
        np.minimum.at(first, raw[codes], position)
        later = ~side.initial
        assert np.array_equal(first[later], side.arrival[later])  # first seen exactly at arrival
        assert np.all(first[side.initial] <= side.arrival[side.initial])
        assert later.sum() > 0.5 * len(raw)


def _thirds(data):
    """Per raw id, its interaction counts in the first and in the last third of the stream."""
    n, out = len(data), []
    for codes, raw in ((data.item, data.raw_item_ids), (data.user, data.raw_user_ids)):
        ids = raw[codes]
        out.append((np.bincount(ids[: n // 3], minlength=len(raw)),
                    np.bincount(ids[-(n // 3):], minlength=len(raw))))
    return out


def test_popularity_ranking_drifts(demo):
    # all ids seen in both thirds (arrivals, age decay and the random walk together);
    # measured on 3 seeds: items 0.71-0.76, users 0.46-0.51
    for first, last in _thirds(demo):
        both = (first > 0) & (last > 0)
        assert _spearman(first[both], last[both]) < 0.9


def test_drift_random_walk_reorders_incumbents(demo):
    # the initial items with >= 100 interactions in the two thirds: arrivals and age are the same for
    # all of them, so only the random walk reorders them. Measured on 3 seeds: 0.80-0.84 with the
    # default drift_sigma, 0.96-0.98 without (what is left is counting noise).
    def incumbents_spearman(data, truth):
        first, last = _thirds(data)[0]
        keep = truth.items.initial & (first + last >= 100)
        assert keep.sum() > 50
        return _spearman(first[keep], last[keep])

    assert incumbents_spearman(demo, ground_truth("synthetic")) < 0.9
    still = dict(drift_sigma=0.0)
    assert incumbents_spearman(generate("synthetic", **still), ground_truth("synthetic", **still)) > 0.93


def test_drift_age_decay_concentrates_interactions_after_arrival(demo):
    # share of the interactions of the items that arrive in the first half that fall within 0.1 N of
    # their arrival. Measured on 3 seeds: 0.31-0.33 with the default decay, 0.19-0.20 without.
    def early_share(data, truth):
        n, ids = len(data), data.raw_item_ids[data.item]
        arrival = truth.items.arrival[ids]
        keep = ~truth.items.initial[ids] & (arrival < n // 2)
        return float(((np.arange(n) - arrival)[keep] < 0.1 * n).mean())

    assert early_share(demo, ground_truth("synthetic")) > 0.27
    flat = dict(item_decay_floor=1.0, user_decay_floor=1.0)
    assert early_share(generate("synthetic", **flat), ground_truth("synthetic", **flat)) < 0.23


def test_rating_histogram_near_target_and_ratings_carry_signal(demo):
    shares = np.bincount(demo.rating.astype(int), minlength=6)[1:] / len(demo)
    assert np.allclose(shares, PRESETS["synthetic"].rating_shares, atol=0.01), shares
    truth = ground_truth("synthetic")
    raw_item = demo.raw_item_ids[demo.item]
    assert np.corrcoef(truth.items.bias[raw_item], demo.rating)[0, 1] > 0.2
    other = generate("synthetic", rating_shares=(0.2, 0.2, 0.2, 0.2, 0.2), n_interactions=20_000)
    assert np.allclose(np.bincount(other.rating.astype(int))[1:] / len(other), 0.2, atol=0.01)


def test_active_rank_grows_with_popularity():
    truth = ground_truth("synthetic")
    for side in (truth.users, truth.items):
        order = np.argsort(side.expected_count)
        assert np.all(np.diff(side.rank[order]) >= 0)
        assert side.rank.min() == 2 and side.rank.max() == 128
        assert np.all((side.latent[:, 2:] != 0).sum(axis=1) <= side.rank - 2)
    table = latent_share_by_popularity("synthetic")
    for name in ("user", "item"):
        beyond16 = table.loc[name, "share_beyond_16"].to_numpy()
        assert beyond16[0] == 0.0 and beyond16[-1] > 0.1  # rare ids: 2 dims do; the top 1%: not 16
        assert np.all(np.diff(table.loc[name, "rank"].to_numpy()) >= 0)


def test_capacity_study_shows_the_crossover():
    # measured on 20 seeds: best dims [2, 2, 16, 16, 16, 128, 128] for x = 16..1024, margins >= 0.05
    table = capacity_study("synthetic")
    assert table["best_dim"].iloc[0] == 2  # fewest ratings: the smallest embedding wins
    assert table["best_dim"].iloc[-1] == 128  # most ratings: the largest wins
    assert table["mse_d128"].iloc[-1] < table["mse_d16"].iloc[-1] < table["mse_d2"].iloc[-1]
    assert np.all(np.diff(table["mse_d128"].to_numpy()) < 0)  # more data helps the big model
    gain = table["mse_d2"] - table["mse_d128"]
    assert gain.iloc[-1] > gain.iloc[0]  # larger dimensions gain more with popularity


@pytest.mark.parametrize("kwargs, match", [
    (dict(config="nope"), "synthetic-tiny"),
    (dict(config="synthetic", n_userz=5), "valid fields"),
    (dict(config="synthetic", n_interactions=8_999), "n_users \\+ n_items"),
    (dict(config="synthetic", n_users=-1), "n_users"),
    (dict(config="synthetic", n_items=2.5), "integer"),
    (dict(config="synthetic", user_exponent=-0.1), "exponent"),
    (dict(config="synthetic", initial_fraction=0.0), "initial_fraction"),
    (dict(config="synthetic", min_rank=200), "min_rank"),
    (dict(config="synthetic", rating_shares=(0.5, 0.5)), "rating_shares"),
    (dict(config="synthetic", start="yesterday"), "start"),
])
def test_bad_config_raises_data_error(kwargs, match):
    config = kwargs.pop("config")
    with pytest.raises(DataError, match=match):
        generate(config, **kwargs)


def test_presets():
    assert {"synthetic-tiny", "synthetic", "synthetic-ml20m"} <= set(PRESETS)
    ml = PRESETS["synthetic-ml20m"]
    assert (ml.n_users, ml.n_items, ml.n_interactions) == (138_493, 27_278, 20_000_263)
    assert PRESETS["synthetic-tiny"].n_interactions <= 20_000
