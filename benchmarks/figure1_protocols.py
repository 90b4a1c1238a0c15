"""Figure 1 under both protocols: does the crossover depend on how the fixed-d models are trained?

    python benchmarks/figure1_protocols.py --dataset ml-100k [--seeds 0 1 2] [--train-sizes 8 32 128]
        [--max-epochs 20] [--max-interactions N]

The same split, models and grid (Figure1Settings, as the report runs it) under the capacity protocol (early stopping
on validation) and the paper's likely one (``--max-epochs`` epochs, no early stopping, no L2). Writes
``benchmarks/figure1_protocols/<dataset>.md`` (and the models as ``.csv``): per protocol, each dimension's test loss
by x, and the crossover claims with their intervals and verdicts.
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

from autoemb_core import experiments as ex  # noqa: E402
from autoemb_core import figures as fg  # noqa: E402
from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import FIGURE1, Figure1Settings, resolve  # noqa: E402
from autoemb_core.data import load_dataset  # noqa: E402
from autoemb_core.methods import FIXED  # noqa: E402
from autoemb_core.train import versions  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-dir", default=str(ROOT / "data"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--train-sizes", nargs="+", type=int, default=list(FIGURE1.train_sizes))
    p.add_argument("--max-epochs", type=int, default=FIGURE1.max_epochs)
    p.add_argument("--max-interactions", type=int, default=None)
    p.add_argument("--task", default="regression")
    p.add_argument("--workers", type=int, default=1, help="models at a time, each in its own process, one thread")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    f = Figure1Settings(train_sizes=tuple(args.train_sizes), max_epochs=args.max_epochs)
    base = resolve({"dataset": args.dataset, "data_dir": args.data_dir, "max_interactions": args.max_interactions,
                    "task": args.task, "progress": False, "device": "cpu"})
    data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    studies, claims, tables = [], [], []
    for protocol in f.PROTOCOLS:
        study = ex.preliminary_study(base, data, FIXED, f.train_sizes, f.n_test, args.seeds, f.n_validation,
                                     f.max_epochs, f.patience, f.l2_grid, protocol, workers=args.workers)
        studies.append(study)
        claims.append(fg.claims_frame(fg.preliminary_claims(study, data.name, args.task)))
        tables.append(ex.crossover(study).reset_index().assign(protocol=protocol))
        print(tables[-1].to_string(index=False), flush=True)
    study, claims = pd.concat(studies, ignore_index=True), pd.concat(claims, ignore_index=True)
    from autoemb_core.report import verdict_table
    out = ROOT / "benchmarks" / "figure1_protocols"
    out.mkdir(exist_ok=True)
    with atomic_write(out / f"{data.name}.csv", "w") as fh:
        study.to_csv(fh, index=False)
    epochs = study.groupby(["protocol", "dimension"])["epochs"].mean().unstack("dimension").round(1)
    text = (f"# Figure 1 under both protocols: {data.name}, {args.task}\n\n"
            f"`python benchmarks/figure1_protocols.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
            f"{datetime.date.today()}, {platform.machine()}, one thread, seeds {args.seeds}, torch "
            f"{versions()['torch']}, commit {versions()['git_commit']}; {len(data):,} interactions, "
            f"{study['users'].iloc[0]} study users, x = {list(f.train_sizes)}, at most {f.max_epochs} epochs.\n\n"
            "## Test loss by x and dimension (mean over seeds)\n\n"
            + pd.concat(tables).to_markdown(index=False, floatfmt=".4f")
            + "\n\n## Epochs trained (mean)\n\n" + epochs.reset_index().to_markdown(index=False)
            + "\n\n## The crossover claims\n\n" + verdict_table(claims).to_markdown(index=False) + "\n")
    with atomic_write(out / f"{data.name}.md", "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
