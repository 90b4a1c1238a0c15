"""The measurement behind the default learning rates: online loss on the `synthetic` stream.

    python benchmarks/lr_sweep.py [--dataset synthetic] [--seeds 0] [--json PATH]

FSE over the DLRS rate; AutoEmb over (DLRS rate, controller rate). All runs use Adam (row-wise lazy Adam on
the embedding tables), batch 500, the paper's layer sizes, regression task.
"""
import argparse
import itertools
import json

import pandas as pd

from autoemb_core import load_dataset
from autoemb_core.config import Config
from autoemb_core.train import run

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="synthetic")
parser.add_argument("--seeds", type=int, nargs="+", default=[0])
parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
parser.add_argument("--controller-lrs", type=float, nargs="+", default=[1e-4, 1e-3])
parser.add_argument("--json", default=None)
args = parser.parse_args()

data = load_dataset(args.dataset)
grid = [("fse", lr, None) for lr in args.lrs]
grid += [("autoemb", lr, clr) for lr, clr in itertools.product(args.lrs, args.controller_lrs)]
rows = []
for (method, lr, clr), seed in itertools.product(grid, args.seeds):
    cfg = Config(method=method, lr=lr, controller_lr=clr or 1e-4, seed=seed, progress=False)
    s = run(cfg, data).summary
    rows.append({"method": method, "lr": lr, "controller_lr": clr, "seed": seed, "online_loss": s["online_loss"],
                 "online_accuracy": s["online_accuracy"], "seconds": round(s["seconds"], 1)})
    print(rows[-1], flush=True)
table = pd.DataFrame(rows).groupby(["method", "lr", "controller_lr"], dropna=False)[["online_loss", "online_accuracy"]].mean()
print(table.to_markdown(floatfmt=".4f"))
if args.json:
    with open(args.json, "w") as f:
        json.dump(rows, f, indent=2)
