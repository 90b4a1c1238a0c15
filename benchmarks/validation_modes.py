"""The measurement behind the default ``validation`` mode: Theta's validation signal, on data not reported.

    python benchmarks/validation_modes.py [--datasets ml-100k synthetic] [--seeds 0 1] [--workers 2]

For each mode (uniform, previous, incoming, holdout) it runs autoemb, darts and fse on the tuning streams of
``benchmarks/tune.py`` (the offline stage; another generator draw for synthetic) and reports the prequential
loss over them. The holdout mode trains W on 90% of each batch for every method, FSE included, so the
comparison that matters is each bilevel method's gap to FSE under the same mode. Writes
``benchmarks/tuning/validation_modes.csv``.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune import ROOT, trial  # noqa: E402

MODES = ("uniform", "previous", "incoming", "holdout")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic"])
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--methods", nargs="+", default=["autoemb", "darts", "fse"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [(d, args.data_dir, 1, "regression", m, i, {"validation": mode}, seed) for d in args.datasets
            for i, mode in enumerate(MODES) for m in args.methods for seed in args.seeds
            if not (m == "fse" and mode in ("previous", "incoming"))]  # fse has no Theta: only holdout changes it
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for job, row in zip(jobs, pool.map(trial, jobs)):
            rows.append({"dataset": job[0], "mode": job[6]["validation"], **row})
            print(f"{job[0]:>10} {job[6]['validation']:>9} {row['method']:>8} seed {row['seed']}: {row['score']:.5f}",
                  flush=True)
    frame = pd.DataFrame(rows)
    (ROOT / "benchmarks" / "tuning").mkdir(exist_ok=True)
    frame.to_csv(ROOT / "benchmarks" / "tuning" / "validation_modes.csv", index=False)
    mean = frame.groupby(["dataset", "mode", "method"])["score"].mean().unstack("method")
    for m in args.methods:
        if m != "fse":
            fse = mean["fse"].groupby(level=0).transform(lambda s: s.fillna(s.loc[(s.name, "uniform")]))
            mean[f"{m} - fse"] = mean[m] - fse
    print(mean.round(5).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
