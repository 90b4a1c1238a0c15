"""A synthetic streaming interaction generator: the built-in dataset for demos, tests and benchmarks.

The stream is a sequence of ``n_interactions`` positions ``k = 0..N-1``; at each position one user and
one item meet and the user rates the item. The model, per side (users, items; ``n`` ids each):

* **Popularity.** Each id gets a Zipf share ``pi ∝ rank^-s`` (``s`` = ``user_exponent`` / ``item_exponent``),
  ranks given in the order of ``arrival_coupling * arrival + (1 - arrival_coupling) * U(0, 1)`` (early ids
  tend to be the popular ones). Its expected number of interactions over the whole stream is
  ``c = N * pi`` (the regular draws of an id capped at ``max_remaining_share`` of the positions after its
  arrival, those of all ids arriving after any point at 90% of the positions left; the uncapped ids absorb
  the rest), so the rank-frequency plot of the counts is a power law of slope ``-s``.
* **Arrivals.** A random ``initial_fraction`` of the ids is present from the start; each of them has its
  guaranteed interaction in the first ``initial_window`` of the stream. Every other id arrives at a
  uniformly random position, and has its arrival interaction there, with a partner drawn among the
  already-arrived ids of the other side. So every id appears at least once, and never before its arrival.
* **Drift.** The stream is cut into ``drift_periods`` equal periods. In period ``p`` an arrived id has
  sampling weight ``w_i * f_ip`` with ``f_ip = (floor + (1 - floor) * exp(-age_ip / life)) * exp(g_ip)``:
  appeal decays with age (``age`` in stream fractions) and ``g`` is a Gaussian random walk over periods
  with standard deviation ``drift_sigma`` at the end of the stream. The base weights ``w_i`` are calibrated
  (Sinkhorn scaling over ids x periods) so that the expected counts equal ``c_i`` despite the drift and the
  arrivals. Regular draws sample only arrived ids, exactly: ids sorted by arrival, cumulative weights
  ``cw`` in that order, ``m(k)`` = number of ids arrived before ``k``, draw ``searchsorted(cw, U * cw[m-1])``.
* **Ratings.** Latent vectors ``a_i = sigma * z_i * 1[j < r_i]`` in ``R^D`` (``D = latent_dim``),
  ``z ~ N(0, 1)``, with a decaying spectrum ``sigma_j^2 ∝ (j+1)^-spectrum_decay`` scaled so that a pair of
  full-rank ids has interaction variance ``signal_scale^2``. The active rank grows geometrically with
  popularity: ``r_i = min_rank * (D / min_rank)^(t_i^rank_curve)``, ``t_i`` the share of all expected
  interactions held by ids less popular than i, rescaled to [0, 1]
  (the rarest id: ``min_rank`` components, the most popular: ``D``). Score
  ``s = b_u + b_i + <a_u, a_i> + noise * N(0, 1)`` with Gaussian biases; the rating is ``s`` quantized to
  ``1..5`` with thresholds at the quantiles of all the stream's scores given by ``rating_shares``
  (MovieLens-like by default). So the signal of a popular id needs many dimensions, a rare id's two.
* **Time.** Position ``k`` gets timestamp ``start + floor(span * (k + V_k) / N)``, ``V_k ~ U[0, 1)``:
  int64 seconds, non-decreasing.

Everything is vectorized numpy, generated period by period in chunks of at most ``chunk_size`` positions,
with one random stream per (period, quantity): the output depends on the seed and the model knobs, not on
``chunk_size``. ``ground_truth(config)`` returns the model (shares, arrivals, ranks, latent vectors).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from .interactions import DataError, Interactions, from_arrays

ML_RATING_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)


@dataclass(frozen=True)
class SyntheticConfig:
    """All the knobs of the synthetic stream (see the module docstring for the model)."""

    n_users: int = 6_000
    """Number of users; every one appears at least once."""
    n_items: int = 3_000
    """Number of items; every one appears at least once."""
    n_interactions: int = 200_000
    """Number of interactions (rows); at least ``n_users + n_items``."""
    user_exponent: float = 0.6
    """Zipf exponent ``s`` of user activity: expected count of the rank-r user ∝ ``r^-s``."""
    item_exponent: float = 0.9
    """Zipf exponent ``s`` of item popularity: expected count of the rank-r item ∝ ``r^-s``."""
    initial_fraction: float = 0.3
    """Fraction of users and of items present at the start of the stream (at least one of each)."""
    initial_window: float = 0.02
    """The initial ids' guaranteed interactions fall in this first fraction of the stream."""
    arrival_coupling: float = 0.3
    """Popularity ranks follow ``arrival_coupling * arrival + (1 - arrival_coupling) * U(0, 1)`` (arrival as
    a stream fraction, 0 for initial ids): 0 makes rank and arrival independent, 1 makes earlier ids
    always more popular. Late ids must fit their count in less time, so 0 gives a very strong turnover."""
    max_remaining_share: float = 0.25
    """An id's expected count is capped at this share of the positions after its arrival."""
    latent_dim: int = 128
    """Dimension D of the true latent space."""
    min_rank: int = 2
    """Active latent components of the rarest id; the most popular id has ``latent_dim``."""
    rank_curve: float = 1.0
    """Active rank ``min_rank * (D / min_rank)^(t^rank_curve)``, ``t`` the interaction share of less
    popular ids; below 1 gives mid-popular ids more components."""
    spectrum_decay: float = 0.5
    """Component j has variance ∝ ``(j+1)^-spectrum_decay`` (0 = flat spectrum)."""
    signal_scale: float = 1.0
    """Standard deviation of ``<a_u, a_i>`` for two full-rank ids."""
    user_bias_scale: float = 0.4
    """Standard deviation of the user biases."""
    item_bias_scale: float = 0.5
    """Standard deviation of the item biases."""
    noise: float = 0.5
    """Standard deviation of the Gaussian noise added to each score before quantization."""
    rating_shares: tuple = ML_RATING_SHARES
    """Target shares of the ratings 1..5 (normalised to sum 1); the thresholds are score quantiles."""
    drift_periods: int = 40
    """Number of equal periods over which the popularity drift is piecewise constant."""
    item_decay_life: float = 0.1
    """Item appeal decays as ``exp(-age / life)``, age in fractions of the stream."""
    item_decay_floor: float = 0.1
    """Fraction of an item's appeal that never decays."""
    user_decay_life: float = 0.2
    """User activity decays as ``exp(-age / life)``, age in fractions of the stream."""
    user_decay_floor: float = 0.25
    """Fraction of a user's activity that never decays."""
    drift_sigma: float = 0.5
    """Standard deviation, at the end of the stream, of each id's log-weight random walk."""
    start: str = "2000-01-01"
    """Date (ISO 8601, UTC) of the first interaction."""
    span_days: float = 5 * 365.25
    """Time span of the stream in days."""
    chunk_size: int = 500_000
    """Positions generated at once (bounds memory; the output does not depend on it)."""
    seed: int = 0
    """Random seed: the same seed and knobs give identical arrays."""

    def __post_init__(self):
        _validate(self)

    @property
    def start_seconds(self) -> int:
        return int(np.datetime64(self.start, "s").astype(np.int64))


# ----------------------------------------------------------------------------------------------
# configuration

_INT_FIELDS = {"n_users", "n_items", "n_interactions", "latent_dim", "min_rank", "drift_periods",
               "chunk_size", "seed"}


def _validate(c: SyntheticConfig) -> None:
    for f in fields(c):
        v = getattr(c, f.name)
        if f.name in _INT_FIELDS:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise DataError(f"SyntheticConfig.{f.name} must be an integer, got {v!r}")
        elif f.name not in ("start", "rating_shares"):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(v):
                raise DataError(f"SyntheticConfig.{f.name} must be a finite number, got {v!r}")

    def need(ok, what):
        if not ok:
            raise DataError(f"bad SyntheticConfig: {what}")

    need(c.n_users >= 1 and c.n_items >= 1, f"n_users and n_items must be >= 1 "
                                            f"(got {c.n_users}, {c.n_items})")
    need(c.n_interactions >= c.n_users + c.n_items,
         f"n_interactions ({c.n_interactions}) must be >= n_users + n_items ({c.n_users + c.n_items}) "
         "so that every user and item can appear")
    need(c.user_exponent >= 0 and c.item_exponent >= 0, "exponents must be >= 0")
    need(0 < c.initial_fraction <= 1, f"initial_fraction must be in (0, 1], got {c.initial_fraction}")
    need(0 < c.initial_window <= 1, f"initial_window must be in (0, 1], got {c.initial_window}")
    need(0 <= c.arrival_coupling <= 1, f"arrival_coupling must be in [0, 1], got {c.arrival_coupling}")
    need(0 < c.max_remaining_share <= 1, "max_remaining_share must be in (0, 1]")
    need(c.latent_dim >= 1, "latent_dim must be >= 1")
    need(1 <= c.min_rank <= c.latent_dim, f"min_rank must be in 1..latent_dim, got {c.min_rank}")
    need(c.rank_curve > 0, "rank_curve must be > 0")
    need(c.spectrum_decay >= 0, "spectrum_decay must be >= 0")
    need(min(c.signal_scale, c.user_bias_scale, c.item_bias_scale, c.noise) >= 0,
         "signal_scale, user_bias_scale, item_bias_scale and noise must be >= 0")
    try:
        shares = np.asarray(c.rating_shares, dtype=np.float64)
    except (TypeError, ValueError):
        shares = np.zeros(0)
    need(shares.shape == (5,) and np.all(shares > 0) and np.all(np.isfinite(shares)),
         f"rating_shares must be 5 positive numbers, got {c.rating_shares!r}")
    need(1 <= c.drift_periods <= c.n_interactions, "drift_periods must be in 1..n_interactions")
    need(c.item_decay_life > 0 and c.user_decay_life > 0, "decay lives must be > 0")
    need(0 <= c.item_decay_floor <= 1 and 0 <= c.user_decay_floor <= 1, "decay floors must be in [0, 1]")
    need(c.drift_sigma >= 0, "drift_sigma must be >= 0")
    need(c.span_days > 0, "span_days must be > 0")
    need(c.chunk_size >= 1, "chunk_size must be >= 1")
    need(c.seed >= 0, "seed must be >= 0")
    try:
        if not isinstance(c.start, str):
            raise TypeError
        np.datetime64(c.start, "s")
    except (TypeError, ValueError):
        raise DataError(f"SyntheticConfig.start must be an ISO date like '2000-01-01', got {c.start!r}")


PRESETS: dict[str, SyntheticConfig] = {
    "synthetic-tiny": SyntheticConfig(n_users=500, n_items=300, n_interactions=15_000, drift_periods=20),
    "synthetic": SyntheticConfig(),
    "synthetic-ml20m": SyntheticConfig(n_users=138_493, n_items=27_278, n_interactions=20_000_263,
                                       start="1995-01-09", span_days=7_385.0),
}


def resolve_config(config: SyntheticConfig | str = "synthetic", **overrides) -> SyntheticConfig:
    """A preset name or a config, with field overrides applied; raises :class:`DataError` if bad."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise DataError(f"unknown synthetic preset {config!r}",
                            hint="valid names: " + ", ".join(PRESETS))
        config = PRESETS[config]
    elif not isinstance(config, SyntheticConfig):
        raise DataError(f"expected a SyntheticConfig or a preset name, got {type(config).__name__}")
    names = [f.name for f in fields(SyntheticConfig)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise DataError(f"unknown SyntheticConfig field(s) {unknown}", hint="valid fields: " + ", ".join(names))
    if "rating_shares" in overrides and isinstance(overrides["rating_shares"], list):
        overrides["rating_shares"] = tuple(overrides["rating_shares"])
    return replace(config, **overrides) if overrides else config


def _preset_name(config: SyntheticConfig) -> str:
    return next((name for name, preset in PRESETS.items() if preset == config), "synthetic-custom")


# ----------------------------------------------------------------------------------------------
# ground truth

@dataclass
class SideTruth:
    """Ground truth of one side (users or items), indexed by raw id ``0..n-1``."""

    share: np.ndarray  # target share of the interactions (float64, sums to 1)
    expected_count: np.ndarray  # expected number of interactions (float64)
    initial: np.ndarray  # bool: present from the start
    arrival: np.ndarray  # int64 position of the guaranteed interaction (the arrival, for non-initial ids)
    rank: np.ndarray  # int64 active latent components
    bias: np.ndarray  # float32
    latent: np.ndarray  # float32 (n, D), zero beyond ``rank``
    weight: np.ndarray  # float64 calibrated base sampling weight
    profile: np.ndarray  # float64 (n, drift_periods) drift factor per period

    @property
    def available_after(self) -> np.ndarray:
        """Regular draws at position k may pick the id iff ``available_after < k`` (-1: from the start)."""
        return np.where(self.initial, -1, self.arrival)


@dataclass
class GroundTruth:
    config: SyntheticConfig
    users: SideTruth
    items: SideTruth
    spectrum: np.ndarray  # sigma_j, the scale of latent component j
    period_bounds: np.ndarray  # int64, drift_periods + 1 positions


def _seeds(config: SyntheticConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, *key]))


_USERS, _ITEMS = 0, 1
_MODEL, _STREAM = 0, 1


def ground_truth(config: SyntheticConfig | str = "synthetic", **overrides) -> GroundTruth:
    """The latent model that :func:`generate` samples from (deterministic given the config)."""
    c = resolve_config(config, **overrides)
    n_total = c.n_interactions
    bounds = np.linspace(0, n_total, c.drift_periods + 1).round().astype(np.int64)
    spectrum = (np.arange(1, c.latent_dim + 1, dtype=np.float64)) ** (-c.spectrum_decay / 2)
    spectrum *= math.sqrt(c.signal_scale / math.sqrt(np.sum(spectrum ** 4))) if c.signal_scale > 0 else 0.0
    sides = []
    for side, n, s, life, floor, bias in (
            (_USERS, c.n_users, c.user_exponent, c.user_decay_life, c.user_decay_floor, c.user_bias_scale),
            (_ITEMS, c.n_items, c.item_exponent, c.item_decay_life, c.item_decay_floor, c.item_bias_scale)):
        rng = _seeds(c, _MODEL, side)
        initial, arrival = _arrivals(rng, n, c)
        share = np.arange(1, n + 1, dtype=np.float64) ** -s
        after = np.where(initial, -1, arrival)
        key = c.arrival_coupling * np.maximum(after, 0) / n_total + (1 - c.arrival_coupling) * rng.random(n)
        share = share[np.argsort(np.argsort(key, kind="stable"), kind="stable")] / share.sum()
        expected = _capped_counts(share, after, c)
        profile = _drift_profile(rng, after, bounds, life, floor, c)
        weight = _calibrate(expected - 1.0, after, profile, bounds, arrival)
        rank = _active_rank(expected, c)
        latent = rng.standard_normal((n, c.latent_dim), dtype=np.float32)
        latent *= spectrum.astype(np.float32)
        latent[np.arange(c.latent_dim)[None, :] >= rank[:, None]] = 0.0
        biases = (bias * rng.standard_normal(n)).astype(np.float32)
        sides.append(SideTruth(expected / n_total, expected, initial, arrival, rank, biases, latent,
                               weight, profile))
    return GroundTruth(c, sides[0], sides[1], spectrum, bounds)


def _arrivals(rng, n: int, c: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Which ids are initial, and each id's distinct guaranteed position (its arrival if not initial)."""
    n_total = c.n_interactions
    n0 = min(n, max(1, math.ceil(c.initial_fraction * n)))
    window = min(n_total, max(n0, math.ceil(c.initial_window * n_total)))
    first = np.sort(rng.choice(window, size=n0, replace=False)).astype(np.int64)
    later = np.sort(rng.choice(n_total - n0, size=n - n0, replace=False)).astype(np.int64)
    later += np.searchsorted(first - np.arange(n0), later, side="right")  # skip the taken positions
    order = rng.permutation(n)
    initial = np.zeros(n, dtype=bool)
    initial[order[:n0]] = True
    arrival = np.empty(n, dtype=np.int64)
    arrival[order[:n0]] = first
    arrival[order[n0:]] = later
    return initial, arrival


_LATE_SHARE = 0.9  # the ids arriving after any point expect at most this share of the positions left


def _capped_counts(share: np.ndarray, after: np.ndarray, c: SyntheticConfig) -> np.ndarray:
    """Expected counts ``N * share`` (the guaranteed interaction included), made feasible for the stream.

    The regular draws of an id are capped at ``max_remaining_share`` of the positions after its arrival,
    and all the ids arriving after any position together at ``_LATE_SHARE`` of the positions left; the
    uncapped ids absorb the difference, so the regular draws still sum to ``N - n``.
    """
    n_total, n = c.n_interactions, len(share)
    total = float(n_total - n)
    open_after = (n_total - 1 - after) * (total / n_total)  # regular positions after arrival, about
    order = np.argsort(-after, kind="stable")  # latest arrival first
    late_cap = np.where(after[order] >= 0, _LATE_SHARE * open_after[order], np.inf)  # not the initial ids
    target = np.maximum(share * n_total - 1.0, 0.0)
    for _ in range(50):
        before = target
        target = np.minimum(target, c.max_remaining_share * open_after)
        running = np.cumsum(target[order])  # suffix sums of the targets, in arrival time
        running += np.minimum(0.0, np.minimum.accumulate(late_cap - running))
        target = np.empty_like(before)
        target[order] = np.diff(running, prepend=0.0)
        free = target >= before * (1 - 1e-12)
        missing = total - target.sum()
        if abs(missing) <= 1e-9 * total or not np.any(free & (target > 0)):
            break
        target[free] *= 1.0 + missing / target[free].sum()
    return target * (total / target.sum()) + 1.0


def _drift_profile(rng, after, bounds, life, floor, c: SyntheticConfig) -> np.ndarray:
    n_total, periods = c.n_interactions, len(bounds) - 1
    mid = (bounds[:-1] + bounds[1:]) / 2.0
    age = np.maximum(mid[None, :] - np.maximum(after, 0)[:, None], 0.0) / n_total
    profile = floor + (1.0 - floor) * np.exp(-age / life)
    steps = rng.standard_normal((len(after), periods)) * (c.drift_sigma / math.sqrt(periods))
    profile *= np.exp(np.cumsum(steps, axis=1))
    return profile


def _calibrate(target, after, profile, bounds, arrival, iterations: int = 300, tol: float = 1e-4):
    """Base weights whose expected regular-draw counts match ``target`` (Sinkhorn over ids x periods)."""
    start, end = bounds[:-1], bounds[1:]
    length = (end - start).astype(np.float64)
    # positions of each period open to each id, and the regular (non-guaranteed) positions per period
    open_ = np.clip(end[None, :] - np.maximum(start[None, :], after[:, None] + 1), 0, None)
    exposure = profile * (open_ / np.maximum(length, 1.0))
    regular = length - np.histogram(arrival, bins=bounds)[0]
    weight = target / target.sum()
    active = target > 0  # an id with nothing to draw (it arrives at the very end) keeps weight 0
    for _ in range(iterations):
        total = weight @ exposure
        expected = weight * (exposure @ (regular / np.maximum(total, 1e-300)))
        ratio = np.where(active, target / np.maximum(expected, 1e-300), 0.0)
        weight *= ratio
        weight /= weight.sum()
        if np.max(np.abs(ratio[active] - 1.0), initial=0.0) < tol:
            break
    return weight


def _active_rank(expected: np.ndarray, c: SyntheticConfig) -> np.ndarray:
    """``min_rank * (D / min_rank)^t`` with ``t`` the share of interactions held by less popular ids."""
    order = np.argsort(expected, kind="stable")
    below = np.cumsum(expected[order]) - expected[order]  # interactions of strictly-less-popular ids
    t = np.empty(len(expected))
    t[order] = below / expected.sum()
    t = (t / max(t.max(), 1e-300)) ** c.rank_curve  # the most popular id gets exactly D
    rank = np.round(c.min_rank * (c.latent_dim / c.min_rank) ** t)
    return np.clip(rank, c.min_rank, c.latent_dim).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# the stream

def generate(config: SyntheticConfig | str = "synthetic", **overrides) -> Interactions:
    """Generate the synthetic stream: a preset name (see ``PRESETS``) or a config, plus field overrides.

    Returns exactly ``n_interactions`` rows with all ``n_users`` users and ``n_items`` items, ratings in
    ``{1,..,5}`` (float32) and sorted int64 timestamps. Raw ids are the generator's ids (the indices of
    :func:`ground_truth`'s arrays). Raises :class:`DataError` for an unknown preset or a bad config.
    """
    return _generate(resolve_config(config, **overrides))[0]


def _generate(c: SyntheticConfig) -> tuple[Interactions, GroundTruth]:
    truth = ground_truth(c)
    n_total = c.n_interactions
    user = np.empty(n_total, dtype=np.int32)
    item = np.empty(n_total, dtype=np.int32)
    score = np.empty(n_total, dtype=np.float32)
    timestamp = np.empty(n_total, dtype=np.int64)
    t0, span = c.start_seconds, c.span_days * 86_400.0
    samplers = [_Sampler(truth.users), _Sampler(truth.items)]
    for p in range(c.drift_periods):
        lo, hi = int(truth.period_bounds[p]), int(truth.period_bounds[p + 1])
        rngs = [_seeds(c, _STREAM, p, q) for q in range(4)]
        for sampler in samplers:
            sampler.start_period(p)
        for a in range(lo, hi, c.chunk_size):
            b = min(hi, a + c.chunk_size)
            user[a:b] = samplers[0].draw(a, b, rngs[0])
            item[a:b] = samplers[1].draw(a, b, rngs[1])
            offset = rngs[2].random(b - a)
            timestamp[a:b] = t0 + np.floor(span * ((np.arange(a, b) + offset) / n_total)).astype(np.int64)
            score[a:b] = _scores(truth, user[a:b], item[a:b], rngs[3])
    shares = np.asarray(c.rating_shares, dtype=np.float64)
    thresholds = np.quantile(score, np.cumsum(shares / shares.sum())[:-1])
    rating = np.empty(n_total, dtype=np.float32)
    for a in range(0, n_total, c.chunk_size):
        b = min(n_total, a + c.chunk_size)
        rating[a:b] = np.searchsorted(thresholds, score[a:b], side="right") + 1
    del score
    meta = {"generator": "autoemb_core.synthetic", "config": _config_dict(c),
            "rating_thresholds": [float(t) for t in thresholds]}
    return from_arrays(user, item, rating, timestamp, _preset_name(c), meta), truth


def _config_dict(c: SyntheticConfig) -> dict:
    d = asdict(c)
    d["rating_shares"] = [float(s) for s in c.rating_shares]
    return d


class _Sampler:
    """Draws one side's ids for a range of positions: guaranteed ids, else weighted among arrived ids."""

    def __init__(self, side: SideTruth):
        self.side = side
        after = side.available_after
        self.order = np.argsort(after, kind="stable")
        self.after_sorted = after[self.order]
        slots = np.argsort(side.arrival)
        self.slot_pos, self.slot_id = side.arrival[slots], slots.astype(np.int32)
        self.cumw = None

    def start_period(self, p: int) -> None:
        self.cumw = np.cumsum(self.side.weight[self.order] * self.side.profile[self.order, p])

    def draw(self, a: int, b: int, rng) -> np.ndarray:
        out = np.empty(b - a, dtype=np.int32)
        i, j = np.searchsorted(self.slot_pos, [a, b])
        forced = np.zeros(b - a, dtype=bool)
        forced[self.slot_pos[i:j] - a] = True
        out[self.slot_pos[i:j] - a] = self.slot_id[i:j]
        positions = np.flatnonzero(~forced) + a
        arrived = np.searchsorted(self.after_sorted, positions, side="left")  # ids with after < k
        top = self.cumw[arrived - 1]
        idx = np.searchsorted(self.cumw, rng.random(len(positions)) * top, side="right")
        out[~forced] = self.order[np.minimum(idx, arrived - 1)]
        return out


def _scores(truth: GroundTruth, user: np.ndarray, item: np.ndarray, rng, block: int = 65_536) -> np.ndarray:
    c = truth.config
    out = truth.users.bias[user] + truth.items.bias[item]
    for a in range(0, len(user), block):
        b = min(len(user), a + block)
        out[a:b] += np.einsum("ij,ij->i", truth.users.latent[user[a:b]], truth.items.latent[item[a:b]])
    out += (c.noise * rng.standard_normal(len(user), dtype=np.float32))
    return out


# ----------------------------------------------------------------------------------------------
# the popularity / capacity effect (the paper's Figure 1), from the ground truth

def capacity_study(config_or_name: SyntheticConfig | str = "synthetic", dims=(2, 16, 128),
                   train_sizes=(16, 32, 64, 128, 256, 512, 1024), n_test: int = 256,
                   n_study_users: int = 200, ridge: float = 1.0, seed: int = 0):
    """Test MSE of per-user ridge fits on ``d`` true item dimensions as the ``x`` training ratings grow.

    Emulates the paper's Figure 1 from the generator's ground truth. The study users are the
    ``n_study_users`` most popular users of the config (the users with many ratings, whose true active
    rank is high). Each gets ``n_test + max(train_sizes)`` ratings drawn from the generator's own model
    (items drawn by the stream's item popularity, score with fresh noise, quantized with the thresholds
    of the generated stream), so ``x`` is not limited by the stream length. ``n_test`` of them are the
    fixed test part; the first ``x`` of the others train (nested sets). Model of the rating residual
    ``rating - (alpha + beta * b_i)`` (the shared part, fitted on the whole stream): the user's own bias
    plus ``<w, z_i[:d]>``, with ``z_i`` the item's true latent vector truncated to its first ``d``
    components and standardized per component (as embedding coordinates are), ridge penalty ``ridge`` on
    ``w``. Returns one row per ``x``: the test MSE on the 1..5 rating scale (``mse_d{d}``), the best ``d``,
    and the numbers of study users and test ratings per cell.
    """
    import pandas as pd

    c = resolve_config(config_or_name)
    dims, train_sizes = sorted(int(d) for d in dims), sorted(int(x) for x in train_sizes)
    if not dims or dims[0] < 1 or dims[-1] > c.latent_dim or not train_sizes or train_sizes[0] < 1 \
            or n_test < 1 or n_study_users < 1:
        raise DataError(f"dims must be in 1..{c.latent_dim}, train_sizes, n_test and n_study_users positive; "
                        f"got {dims}, {train_sizes}, {n_test}, {n_study_users}")
    data, truth = _generate(c)
    thresholds = np.asarray(data.meta["rating_thresholds"])
    raw_item = data.raw_item_ids[data.item]
    beta, alpha = np.polyfit(truth.items.bias[raw_item].astype(np.float64), data.rating.astype(np.float64), 1)
    users = np.argsort(-truth.users.expected_count, kind="stable")[:n_study_users]
    rng = np.random.default_rng([seed, c.seed])
    n = n_test + train_sizes[-1]
    items = np.searchsorted(np.cumsum(truth.items.share), rng.random((len(users), n)) * truth.items.share.sum())
    items = np.minimum(items, c.n_items - 1)
    score = _scores(truth, np.repeat(users, n), items.ravel(), rng).reshape(len(users), n)
    rating = (np.searchsorted(thresholds, score, side="right") + 1).astype(np.float64)
    residual = rating - (alpha + beta * truth.items.bias[items])
    sq_err = np.zeros((len(train_sizes), len(dims)))
    for row in range(len(users)):
        test_items, test_y = items[row, :n_test], residual[row, :n_test]
        for a, x in enumerate(train_sizes):
            train = slice(n_test, n_test + x)
            for b, d in enumerate(dims):
                pred = _ridge_predict(truth, items[row, train], residual[row, train], test_items, d, ridge)
                sq_err[a, b] += np.sum((pred - test_y) ** 2)
    mse = sq_err / (len(users) * n_test)
    table = pd.DataFrame(mse, index=pd.Index(train_sizes, name="train_size"),
                         columns=[f"mse_d{d}" for d in dims])
    table["best_dim"] = np.asarray(dims)[np.argmin(mse, axis=1)]
    table["n_users"] = len(users)
    table["n_test"] = len(users) * n_test
    return table


def _ridge_predict(truth: GroundTruth, train_items, y, test_items, d: int, ridge: float) -> np.ndarray:
    """Ridge fit of ``y`` on ``[1, z_i[:d]]`` (standardized true item components), predictions on test."""
    scale = truth.spectrum[:d]

    def features(ids):
        return np.column_stack([np.ones(len(ids)), truth.items.latent[ids, :d] / scale])

    x = features(train_items)
    penalty = np.full(x.shape[1], float(ridge))
    penalty[0] = 1e-6  # the user's own bias: (almost) unpenalized
    w = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ np.asarray(y, dtype=np.float64))
    return features(test_items) @ w


def latent_share_by_popularity(config_or_name: SyntheticConfig | str = "synthetic", cutoffs=(2, 16),
                               edges=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99)):
    """Share of each id's latent score variance carried by components beyond each cutoff, by popularity.

    For id i, component j contributes ``a_ij^2 * E[a_pj^2]`` to the variance of ``<a_i, a_p>`` over
    partners p drawn by popularity. Returns, per side and popularity bucket (quantiles ``edges`` of the
    expected count; the default makes deciles and splits off the top 1%), the mean expected count, mean
    active rank and mean share of that variance beyond each cutoff.
    """
    import pandas as pd

    truth = ground_truth(config_or_name)
    bounds = [0.0, *edges, 1.0]
    labels = [f"{100 * a:g}-{100 * b:g}%" for a, b in zip(bounds[:-1], bounds[1:])]
    frames = []
    for name, side, other in (("user", truth.users, truth.items), ("item", truth.items, truth.users)):
        partner = other.share @ (other.latent.astype(np.float64) ** 2)  # E_p[a_pj^2], per component j
        contrib = side.latent.astype(np.float64) ** 2 * partner[None, :]
        total = np.maximum(contrib.sum(axis=1), 1e-300)
        order = np.argsort(side.expected_count, kind="stable")
        quantile = np.empty(len(order))
        quantile[order] = (np.arange(len(order)) + 0.5) / len(order)
        bucket = np.searchsorted(np.asarray(edges), quantile, side="right")
        frame = pd.DataFrame({"side": name, "popularity": pd.Categorical.from_codes(bucket, labels),
                              "expected_count": side.expected_count, "rank": side.rank})
        for cut in cutoffs:
            frame[f"share_beyond_{cut}"] = contrib[:, cut:].sum(axis=1) / total
        frames.append(frame.groupby(["side", "popularity"], observed=True).mean())
    return pd.concat(frames)
