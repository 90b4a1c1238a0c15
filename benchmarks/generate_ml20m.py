"""Synthetic generator at MovieLens-20m scale, plus the capacity study of the demo preset.

    python benchmarks/generate_ml20m.py [--preset synthetic-ml20m] [--seed 0]

Generates the preset (first, so the process's peak RSS, ``ru_maxrss``, is that of this generation), prints
wall time, peak RSS, sizes and fitted rank-frequency slopes; then the times of the small presets, and the
``capacity_study`` and ``latent_share_by_popularity`` tables of the ``synthetic`` preset.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoemb_core.synthetic import PRESETS, capacity_study, generate, latent_share_by_popularity  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def slope(counts: np.ndarray, top: float = 0.5) -> float:
    """-slope of log(count) against log(rank) over the top ``top`` share of the ranks."""
    c = np.sort(counts)[::-1][: max(2, int(top * len(counts)))].astype(float)
    return float(-np.polyfit(np.log(np.arange(1, len(c) + 1)), np.log(c), 1)[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synthetic-ml20m", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    base = peak_rss_mib()
    start = time.perf_counter()
    data = generate(args.preset, seed=args.seed)
    seconds = time.perf_counter() - start
    config = PRESETS[args.preset]
    print(f"{args.preset}: {len(data):,} interactions, {data.n_users:,} users, {data.n_items:,} items")
    print(f"  wall time {seconds:.1f} s, peak RSS {peak_rss_mib():.0f} MiB (before generating: {base:.0f} MiB)")
    print(f"  rank-frequency slope (top half of the ranks): users {slope(np.bincount(data.user)):.3f} "
          f"(configured {config.user_exponent}), items {slope(np.bincount(data.item)):.3f} "
          f"(configured {config.item_exponent})")
    summary = data.summary()
    print("  ratings:", {int(k): round(v / len(data), 4) for k, v in summary["rating_histogram"].items()},
          f"span {summary['first']} .. {summary['last']}")
    print(f"  user interactions median {summary['user_interactions_median']:.0f} max "
          f"{summary['user_interactions_max']:,}; item median {summary['item_interactions_median']:.0f} "
          f"max {summary['item_interactions_max']:,}")
    del data

    for name in ("synthetic-tiny", "synthetic"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            generate(name, seed=args.seed)
            times.append(time.perf_counter() - start)
        print(f"{name}: best of 3 {min(times):.3f} s")

    start = time.perf_counter()
    table = capacity_study("synthetic", seed=args.seed)
    print(f"\ncapacity_study('synthetic') ({time.perf_counter() - start:.1f} s): test MSE on the 1..5 rating")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nlatent_share_by_popularity('synthetic'):")
    print(latent_share_by_popularity("synthetic").to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
