"""The measurement behind the default optimizers and rates: FSE and biases on MovieLens-100K's offline stage.

    python benchmarks/defaults.py [--workers 2]

Each setting runs as a trial of ``benchmarks/tune.py`` (the offline stage only, prequential loss over it) for
seeds 0 and 1. The output of the run that chose the defaults is ``benchmarks/tuning/defaults-ml-100k.txt``.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune import ROOT, trial  # noqa: E402

SETTINGS = [("fse", dict(table_optimizer="adam", table_lr=None, lr=3e-3))]  # the first version's defaults
SETTINGS += [("fse", dict(table_optimizer=o, table_lr=t, lr=lr)) for o, t in
             [("adam", 0.003), ("adam", 0.01), ("adam", 0.03), ("adagrad", 0.03), ("adagrad", 0.1), ("adagrad", 0.2),
              ("adagrad", 0.3), ("adagrad", 0.5)] for lr in (1e-4, 3e-4, 1e-3)]
SETTINGS += [("biases", dict(table_optimizer=o, table_lr=t, lr=1e-2)) for o in ("adam", "adagrad")
             for t in (0.03, 0.1, 0.3, 0.5, 1.0)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [("ml-100k", str(ROOT / "data"), 1, "regression", m, i, point, seed)
            for i, (m, point) in enumerate(SETTINGS) for seed in (0, 1)]
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(trial, jobs):
            print(f"{row['method']:>7} seed {row['seed']}  {row['settings']:<60} {row['score']:.5f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
