"""Theta's validation signal, on data not reported: each mode's loss, and where the controller puts its weight.

    python benchmarks/validation_modes.py [--datasets ml-100k synthetic] [--methods autoemb darts fse] [--seeds 0 1]
        [--workers 2]

For each mode (uniform, previous, incoming, holdout) it streams each method, with its tuned values, through the
tuning stream of ``benchmarks/tune.py`` (the offline stage; another generator draw for synthetic) and records the
prequential loss and, per user popularity bucket (0, 1, 2-3, 4-7, ...), the mean selection weight on the largest
space: does any mode break the collapse onto 128-d, and does it pay? The holdout mode trains W on 90% of each batch
for every method, FSE included, so the comparison that matters is each method's gap to FSE under the same mode.
Writes ``benchmarks/tuning/validation_modes.csv`` and ``validation_modes.md``.
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune import ROOT, tuning_stream  # noqa: E402

from autoemb_core.atomic import atomic_write  # noqa: E402

MODES = ("uniform", "previous", "incoming", "holdout")


def measure(job) -> dict:
    """One (dataset, mode, method, seed): the prequential loss over the tuning stream and the mean weight on the
    largest space per log2 bucket of the user's popularity."""
    import torch
    from autoemb_core.config import resolve
    from autoemb_core.train import StreamingTrainer
    dataset, data_dir, method, mode, seed = job
    torch.set_num_threads(1)
    data = tuning_stream(dataset, data_dir, 1)
    cfg = resolve({"dataset": dataset, "data_dir": data_dir, "method": method, "seed": seed, "validation": mode,
                   "progress": False, "device": "cpu"})
    trainer = StreamingTrainer(data, cfg)
    total, size, share = 0.0, 0, {}
    for index in range(len(trainer.batches)):
        step = trainer.step(index)
        total, size = total + float(step.loss.sum()), size + len(step.loss)
        if step.weights["user"] is not None:
            largest = step.weights["user"][:, -1].index_select(0, step.view.inverse["user"]).cpu().numpy()
            bucket = np.floor(np.log2(1 + step.popularity["user"].index_select(0, step.view.inverse["user"]).cpu().numpy()))
            for b, w in zip(bucket.astype(int), largest):
                s = share.setdefault(int(b), [0.0, 0])
                s[0], s[1] = s[0] + float(w), s[1] + 1
    return {"dataset": dataset, "mode": mode, "method": method, "seed": seed, "score": total / size,
            **{f"share_{b}": s / n for b, (s, n) in sorted(share.items())}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "synthetic"])
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--methods", nargs="+", default=["autoemb", "darts", "fse"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [(d, args.data_dir, m, mode, seed) for d in args.datasets for mode in MODES for m in args.methods
            for seed in args.seeds if not (m == "fse" and mode in ("previous", "incoming"))]  # fse has no Theta
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(measure, jobs):
            rows.append(row)
            print(f"{row['dataset']:>10} {row['mode']:>9} {row['method']:>8} seed {row['seed']}: {row['score']:.5f}",
                  flush=True)
    frame = pd.DataFrame(rows)
    folder = ROOT / "benchmarks" / "tuning"
    with atomic_write(folder / "validation_modes.csv", "w") as f:
        frame.to_csv(f, index=False)
    mean = frame.groupby(["dataset", "mode", "method"], sort=False).mean(numeric_only=True).drop(columns="seed")
    fse = frame[frame["method"] == "fse"].groupby(["dataset", "mode"])["score"].mean()
    mean["gap to fse"] = [row["score"] - fse.get((d, mo), fse.get((d, "uniform"), np.nan))
                          for (d, mo, _), row in mean.iterrows()]
    shares = sorted((c for c in mean.columns if c.startswith("share_")), key=lambda c: int(c.split("_")[1]))
    table = mean[["score", "gap to fse", *shares]].rename(
        columns={c: f"128-d share, pop {2 ** int(c.split('_')[1]) - 1}+" for c in shares}).reset_index()
    text = ("# Theta's validation mode: loss and the weight on the largest space\n\n"
            f"`python benchmarks/validation_modes.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
            f"seeds {args.seeds}, mean over seeds; prequential loss over each tuning stream; `128-d share, pop k+`: "
            "the mean user weight on the largest space for users with k or more earlier interactions (the bucket "
            "runs to the next one).\n\n" + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    with atomic_write(folder / "validation_modes.md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
