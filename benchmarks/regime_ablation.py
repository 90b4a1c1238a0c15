"""Which of a regime's settings makes its result? Each group of the regime's settings put back, one at a time, to
what the same method runs with in the ``tuned`` regime.

    python benchmarks/regime_ablation.py --dataset ml-100k [--regime esapn] [--methods fse autoemb] [--seeds 0 1]
        [--task regression] [--max-interactions N]

Writes ``benchmarks/regime_ablation/<dataset>-<regime>-<task>.md`` (and ``.csv``): per method, the regime's online
loss, the tuned regime's, and for each group the loss with that group at its tuned values, with the share of the
regime-to-tuned gap that the group closes (mean over seeds; the seeds are paired). A group's value is the tuned
run's own (its tuned value where the params file has one, else the default), given explicitly so that the regime
does not override it.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import resolve  # noqa: E402
from autoemb_core.data import load_dataset  # noqa: E402
from autoemb_core.regimes import REGIMES  # noqa: E402
from autoemb_core.train import StreamingTrainer, versions  # noqa: E402

# settings that act together, each group put back as one
GROUPS = {
    "head (BatchNorm head, one hidden layer)": ("head_batchnorm", "hidden"),
    "predictions on batch statistics": ("predict_batchnorm",),
    "N(0, 1) embedding init": ("embedding_init_std",),
    "one Adam rate for all of W": ("optimizer", "table_optimizer", "lr", "table_lr"),
    "Theta's rate": ("controller_lr", "logit_lr"),
    "one BatchNorm shared by the spaces": ("shared_batchnorm",),
    "no 1/N": ("selection",),
    "first-order Theta on the previous batch": ("xi", "validation"),
    "one step per batch": ("train_passes", "train_microbatch"),
}

SELECTING_ONLY = ("Theta's rate", "one BatchNorm shared by the spaces", "no 1/N", "first-order Theta on the previous batch")


def online_loss(data, values: dict) -> float:
    return float(StreamingTrainer(data, resolve(values)).run().summary["online_loss"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--regime", default="esapn", choices=[r for r in REGIMES if not REGIMES[r].tuned])
    p.add_argument("--methods", nargs="+", default=["fse", "autoemb"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--task", default="regression")
    p.add_argument("--max-interactions", type=int, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset(args.dataset, args.data_dir, max_interactions=args.max_interactions)
    bundle = REGIMES[args.regime].settings
    rows = []
    for method in args.methods:
        common = {"dataset": args.dataset, "data_dir": args.data_dir, "max_interactions": args.max_interactions,
                  "method": method, "task": args.task, "progress": False, "device": "cpu", "threads": 1}
        tuned = resolve(common).resolved()
        for seed in args.seeds:
            one = {**common, "seed": seed}
            rows.append({"method": method, "seed": seed, "run": args.regime,
                         "online_loss": online_loss(data, {**one, "regime": args.regime})})
            rows.append({"method": method, "seed": seed, "run": "tuned", "online_loss": online_loss(data, one)})
            for group, keys in GROUPS.items():
                if not tuned.selecting and group in SELECTING_ONLY:
                    continue
                back = {k: getattr(tuned, k) for k in keys if k in bundle and bundle[k] != getattr(tuned, k)}
                if back:
                    rows.append({"method": method, "seed": seed, "run": group,
                                 "online_loss": online_loss(data, {**one, "regime": args.regime, **back})})
            print(pd.DataFrame(rows).tail(len(GROUPS) + 2).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    table = []
    for method, g in frame.groupby("method", sort=False):
        by = g.pivot(index="seed", columns="run", values="online_loss")
        gap = by["tuned"] - by[args.regime]
        for run in [args.regime, *(r for r in GROUPS if r in by.columns), "tuned"]:
            change = by[run] - by[args.regime]
            table.append({"method": method, "run": run if run in (args.regime, "tuned") else f"{args.regime}, {run} as tuned",
                          "online loss": by[run].mean(), "change": change.mean(),
                          "share of the gap to tuned": (change / gap).mean() if run != args.regime else float("nan")})
    table = pd.DataFrame(table)
    out = ROOT / "benchmarks" / "regime_ablation"
    out.mkdir(exist_ok=True)
    name = f"{args.dataset}-{args.regime}-{args.task}"
    with atomic_write(out / f"{name}.csv", "w") as f:
        frame.to_csv(f, index=False)
    with atomic_write(out / f"{name}.md", "w") as f:
        f.write(f"# Which of the {args.regime} regime's settings makes its result: {args.dataset}, {args.task}\n\n"
                f"`python benchmarks/regime_ablation.py {' '.join(sys.argv[1:])}`, {datetime.date.today()}, "
                f"{platform.machine()}, one thread, seeds {args.seeds}, torch {versions()['torch']}, commit "
                f"{versions()['git_commit']}. Online loss, mean over seeds; `change` is against the {args.regime} "
                "run (paired per seed); the share is of the gap between the regime and tuned.\n\n"
                + table.to_markdown(index=False, floatfmt=".4f") + "\n")
    print(table.to_markdown(index=False, floatfmt=".4f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
