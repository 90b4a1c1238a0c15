"""Loader speed: autoemb's MovieLens loader against plain pandas.read_csv(engine="pyarrow").

    python benchmarks/load_speed.py [--lines 20000263] [--repeats 3] [--dir /tmp/autoemb-bench]

Writes a synthetic ``ratings.csv`` in the exact ml-20m format (header, half-star ratings), then times, each in
a fresh subprocess so that peak RSS is per reader: (a) pandas' pyarrow engine (parse only), (b)
``load_dataset("ml-20m", cache=False)`` (parse, validate, sort, remap), (c) the same from its cache.
Prints medians over the repeats and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

READERS = {
    "pandas.read_csv(engine='pyarrow')": "import pandas as pd; df = pd.read_csv(PATH, engine='pyarrow'); n = len(df)",
    "autoemb load_dataset (no cache)": "import autoemb_core as ae; n = len(ae.load_dataset('ml-20m', DIR, cache=False))",
    "autoemb load_dataset (cached)": "import autoemb_core as ae; n = len(ae.load_dataset('ml-20m', DIR, cache_dir=CACHE))",
}


def write_ratings(path: Path, lines: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    table = pa.table({
        "userId": rng.integers(1, 138_494, lines),
        "movieId": rng.zipf(1.3, lines) % 131_263 + 1,
        "rating": rng.integers(1, 11, lines) / 2,
        "timestamp": rng.integers(789_652_004, 1_427_784_002, lines),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"userId,movieId,rating,timestamp\n")
        pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))


def run_reader(code: str, folder: Path) -> dict:
    program = f"""
import resource, time, json
PATH, DIR, CACHE = {str(folder / 'ml-20m' / 'ratings.csv')!r}, {str(folder)!r}, {str(folder / 'cache')!r}
t = time.perf_counter()
{code}
print(json.dumps({{"seconds": time.perf_counter() - t, "n": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000_263)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/autoemb-bench")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    folder = Path(args.dir)
    path = folder / "ml-20m" / "ratings.csv"
    if not path.exists() or sum(1 for _ in open(path, "rb")) != args.lines + 1:
        t = time.perf_counter()
        write_ratings(path, args.lines)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f}s")
    run_reader(READERS["autoemb load_dataset (cached)"], folder)  # warm the cache
    records = []
    print(f"{'reader':<40}{'median s':>10}{'min s':>8}{'lines/s':>14}{'peak RSS MiB':>14}")
    for name, code in READERS.items():
        runs = [run_reader(code, folder) for _ in range(args.repeats)]
        assert all(r["n"] == args.lines for r in runs), runs
        seconds = [r["seconds"] for r in runs]
        record = {"reader": name, "lines": args.lines, "median_s": statistics.median(seconds), "min_s": min(seconds),
                  "lines_per_s": args.lines / statistics.median(seconds),
                  "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
        records.append(record)
        print(f"{name:<40}{record['median_s']:>10.2f}{record['min_s']:>8.2f}{record['lines_per_s']:>14,.0f}"
              f"{record['peak_rss_mb']:>14,.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
