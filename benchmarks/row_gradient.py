"""Should a table row's gradient be the mean loss's (over the step's samples) or its own samples' sum?

    python benchmarks/row_gradient.py --dataset ml-100k [--data-dir data] [--seeds 0 1] [--out benchmarks/row_gradient.md]

``biases`` on the offline stage of ``--dataset`` (the tuning data: nothing reported), regression, for each table
optimizer (row-wise sgd and adagrad), row gradient (mean, sum) and micro-batch size m: the prequential loss at each
table rate of a grid, and the best rate. Under sgd the two are one family reparametrised (mean at rate r is sum at
r / m), so what matters is whether the best rate stays put as m changes, so that one tuning range serves every m;
adagrad is invariant to the gradient's scale, so the two should agree there.
"""
from __future__ import annotations

import argparse
import itertools
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

RATES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
MICROBATCHES = (1, 20, 100, None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "row_gradient.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data_dir)
    data = data.head(int(round(len(data) * Config().offline_fraction)))
    rows = []
    for optimizer, mode, m, rate, seed in itertools.product(("sgd", "adagrad"), ("mean", "sum"), MICROBATCHES,
                                                            RATES, args.seeds):
        if optimizer == "adagrad" and rate > 1.0:
            continue
        cfg = Config(dataset=args.dataset, method="biases", table_optimizer=optimizer, row_gradient=mode,
                     train_microbatch=m, table_lr=rate, lr=0.01, seed=seed, progress=False)
        try:
            result = run(cfg, data)
            b = result.batches
            score = float((b.loss * b["size"]).sum() / b["size"].sum())
        except Exception as error:  # a rate that diverges scores as missing
            score = float("nan")
            print(f"{optimizer} {mode} m={m} rate={rate}: {str(error).splitlines()[0]}", flush=True)
        rows.append({"table_optimizer": optimizer, "row_gradient": mode, "m": m or 500, "table_lr": rate,
                     "seed": seed, "loss": score})
        print(rows[-1], flush=True)
    frame = pd.DataFrame(rows).groupby(["table_optimizer", "row_gradient", "m", "table_lr"], as_index=False)["loss"].mean()
    best = frame.loc[frame.dropna().groupby(["table_optimizer", "row_gradient", "m"])["loss"].idxmin()]
    grid = frame.pivot_table(index=["table_optimizer", "row_gradient", "m"], columns="table_lr", values="loss")
    text = (f"# Row gradient: mean or sum ({args.dataset}, offline stage, biases, regression, seeds {args.seeds})\n\n"
            f"Command: `python benchmarks/row_gradient.py --dataset {args.dataset} --seeds "
            f"{' '.join(map(str, args.seeds))}`\n\n## Best table rate per setting\n\n"
            + best.to_markdown(index=False, floatfmt=".5f") + "\n\n## Every rate\n\n"
            + grid.to_markdown(floatfmt=".5f") + "\n")
    with atomic_write(Path(args.out), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
