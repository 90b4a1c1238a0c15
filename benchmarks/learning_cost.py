"""The cost of learning a batch in k passes of m-sample micro-batches (train_passes, train_microbatch).

    python benchmarks/learning_cost.py [--dataset ml-100k] [--data-dir data] [--interactions 10000]

Each method streams the first ``--interactions`` of the dataset at each (m, k), one thread, one run after another
in this process, so the ratios to the default (the whole batch, one pass) are measured in the same run. Writes
``benchmarks/learning_cost.md``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import Config  # noqa: E402
from autoemb_core.data import load_dataset  # noqa: E402
from autoemb_core.train import run  # noqa: E402

SETTINGS = ((None, 1), (None, 3), (50, 1), (10, 1), (1, 1))  # (train_microbatch, train_passes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--interactions", type=int, default=10_000)
    parser.add_argument("--methods", nargs="+", default=["biases", "mf", "fse", "autoemb"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data_dir).head(args.interactions)
    rows = []
    for method in args.methods:
        for m, k in SETTINGS:
            cfg = Config(dataset=args.dataset, method=method, train_microbatch=m, train_passes=k, progress=False)
            rows.append({"method": method, "m": m or cfg.batch_size, "k": k,
                         "samples/s": run(cfg, data).summary["samples_per_second"]})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    frame["cost vs default"] = frame.groupby("method")["samples/s"].transform("first") / frame["samples/s"]
    text = (f"# Cost of train_microbatch (m) and train_passes (k)\n\nCommand: `python benchmarks/learning_cost.py "
            f"--dataset {args.dataset} --interactions {args.interactions}`; one thread; batch 500.\n\n"
            + frame.to_markdown(index=False, floatfmt=",.1f") + "\n")
    with atomic_write(ROOT / "benchmarks" / "learning_cost.md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
