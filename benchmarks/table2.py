"""Table 2 with the floor and the controls: every method, tuned alike, on one dataset, seeds paired.

    python benchmarks/table2.py --dataset ml-100k [--seeds 0 1 2 3 4] [--tasks regression classification]
        [--methods ...] [--threads 1] [--results-dir results/table2/<dataset>] [--params FILE] [--name FILE] [--reuse]

Runs ``compare`` with the tuned values of ``params/<dataset>.yaml`` and writes ``benchmarks/table2/<dataset>.md``:

- Table 2's layout (online stage, mean ± std over seeds);
- the floor: each method's online loss minus ``biases``' on the same seeds, with the 95% t interval of the
  paired difference (below 0: the method beats the bias model);
- DARTS' weights: mean |w - 1/N| by popularity bucket (do the logits move?);
- the bilevel methods' ``hypergradient_second_order_ratio`` (median over batches, per seed).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import resolve  # noqa: E402
from autoemb_core.experiments import TABLE2, compare, overall_table, paper_table  # noqa: E402
from autoemb_core.stats import paired_interval  # noqa: E402


def floor_table(runs: pd.DataFrame, reference: str = "biases") -> pd.DataFrame:
    rows = []
    for task, group in runs.groupby("task", sort=False):
        by = group.pivot(index="seed", columns="method", values="online_loss")
        for method in by.columns:
            if method != reference:
                r = paired_interval(by[method], by[reference])
                rows.append({"task": task, "method": method, f"loss - {reference}": r["mean"], "95% low": r["low"],
                             "95% high": r["high"], "seeds": r["seeds"],
                             "verdict": "beats" if r["high"] < 0 else "loses" if r["low"] > 0 else "tie"})
    return pd.DataFrame(rows)


def run_names(runs: pd.DataFrame) -> set[str]:
    """The run folders of this table: a shared --results-dir may hold other tasks', methods' or seeds' runs."""
    return {f"{r.task}-{r.method}-seed{r.seed}" for r in runs.itertuples()}


def gap_table(folder: Path, data, names: set[str], reference: str = "biases", batch_size: int = 500,
              offline_fraction: float = 0.7) -> pd.DataFrame:
    """Where each method's online loss differs from ``reference``'s, per sample and paired by seed: the mean
    difference by the user's popularity before the batch (log2 bucket) and by how many samples of its batch the
    user has (the share of the batch's step its row gets), over the runs ``names``. Below 0: the method is better
    there."""
    from autoemb_core.stream import in_batch_counts, make_batches
    batches = make_batches(len(data), batch_size, offline_fraction)
    in_batch = in_batch_counts(data.user, batches)[batches.split:]
    bucket = lambda v, edges, names: pd.cut(v, edges, right=False, labels=names)  # noqa: E731
    frames = []
    for path in sorted(p for p in folder.glob(f"*-{reference}-seed*/samples.parquet") if p.parent.name in names):
        task, seed = path.parent.name.split("-")[0], path.parent.name.rsplit("seed", 1)[1]
        base = pd.read_parquet(path)
        for other in sorted(p for p in folder.glob(f"{task}-*-seed{seed}/samples.parquet") if p.parent.name in names):
            method = other.parent.name[len(task) + 1:-len(f"-seed{seed}")]
            if method == reference:
                continue
            frame = pd.DataFrame({"task": task, "method": method, "gap": pd.read_parquet(other)["loss"] - base["loss"],
                                  "popularity": bucket(base["user_popularity"], [0, 1, 4, 16, 64, 256, np.inf],
                                                       ["0", "1-3", "4-15", "16-63", "64-255", "256+"]),
                                  "in batch": bucket(in_batch, [1, 2, 4, 8, 16, np.inf], ["1", "2-3", "4-7", "8-15",
                                                                                          "16+"])})
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames)
    parts = [frame.groupby(["task", "method", key], observed=True)["gap"].mean().unstack(key)
             .rename(columns=lambda c, k=key: f"{k}: {c}") for key in ("popularity", "in batch")]
    share = {f"{k}: {c}": v for k in ("popularity", "in batch") for c, v in
             frame[frame["method"] == frame["method"].iloc[0]][k].value_counts(normalize=True).items()}
    table = pd.concat(parts, axis=1)
    table.loc[("share of samples", ""), :] = [share.get(c, np.nan) for c in table.columns]
    return table


def weight_movement(folder: Path, names: set[str], method: str = "darts") -> pd.DataFrame:
    """Mean |w - 1/N| of ``method``'s recorded weights, by log2 popularity bucket, side and task, over the runs
    ``names``."""
    frames = []
    for path in sorted(p for p in folder.glob(f"*-{method}-seed*/alphas.parquet") if p.parent.name in names):
        alphas = pd.read_parquet(path)
        columns = [c for c in alphas.columns if c.startswith("w")]
        alphas["moved"] = (alphas[columns] - 1 / len(columns)).abs().mean(axis=1)
        alphas["bucket"] = "2^" + np.floor(np.log2(1 + alphas["popularity"])).astype(int).astype(str)
        alphas["task"] = path.parent.name.split("-")[0]
        frames.append(alphas)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames)
    order = sorted(frame["bucket"].unique(), key=lambda b: int(b[2:]))
    table = frame.groupby(["task", "side", "bucket"])["moved"].mean().unstack("bucket")[order]
    return table.round(4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tasks", nargs="+", default=["regression", "classification"])
    parser.add_argument("--methods", nargs="+", default=list(TABLE2))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--params", default=None, help="a params file over params/<dataset>.yaml, such as a "
                        "tuned.yaml of the tuning protocol (its tuned: block replaces the methods' values)")
    parser.add_argument("--name", default=None, help="the file under benchmarks/table2/ (default: the dataset, "
                        "with the task when there is one)")
    parser.add_argument("--reuse", action="store_true", help="reuse the runs already saved in --results-dir/runs "
                        "with the same settings (a report's, for one), and leave its runs.csv alone")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    folder = Path(args.results_dir or ROOT / "results" / "table2" / args.dataset)
    folder.mkdir(parents=True, exist_ok=True)
    base = resolve({"dataset": args.dataset, "data_dir": args.data_dir, "progress": False}, args.params)
    runs = compare(base, args.methods, args.tasks, args.seeds, results_dir=folder / "runs", reuse=args.reuse)
    if not args.reuse:
        runs.to_csv(folder / "runs.csv", index=False)
    ratios, names = [], run_names(runs)
    for path in sorted(p for p in (folder / "runs").glob("*/summary.json") if p.parent.name in names):
        s = json.loads(path.read_text())
        if s.get("hypergradient_second_order_ratio") is not None:
            ratios.append({"task": s["task"], "method": s["method"], "seed": s["seed"],
                           "second_order_ratio": s["hypergradient_second_order_ratio"]})
    ratios = pd.DataFrame(ratios)
    table = paper_table(overall_table(runs))
    floor = floor_table(runs)
    moved = weight_movement(folder / "runs", names)
    from autoemb_core.data import load_dataset
    data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    gaps = gap_table(folder / "runs", data, names, batch_size=base.batch_size, offline_fraction=base.offline_fraction)
    import torch
    lines = [f"# Table 2 on {args.dataset}: every method and control, tuned alike",
             "", f"Command: `python benchmarks/table2.py --dataset {args.dataset} --seeds {' '.join(map(str, args.seeds))}"
             f" --tasks {' '.join(args.tasks)}"
             + (f" --methods {' '.join(args.methods)}" if list(args.methods) != list(TABLE2) else "")
             + (f" --params {args.params}" if args.params else "")
             + (f" --name {args.name}" if args.name else "")
             + (f" --results-dir {args.results_dir} --reuse" if args.reuse else "") + f"`; {datetime.date.today()}, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s). Tuned values: "
             + (f"{args.params} over " if args.params else "") + f"params/{args.dataset}.yaml.",
             "", "## Online stage, mean ± std over seeds", "", table.reset_index().to_markdown(index=False),
             "", "## The floor: online loss minus biases', paired by seed, 95% t interval", "",
             floor.to_markdown(index=False, floatfmt=".5f"),
             "", "## Where the gap to biases is: mean per-sample online loss minus biases', paired by seed, by the "
             "user's popularity before its batch and by how many samples of its batch the user has (last row: the "
             "share of samples in each column)", "",
             gaps.reset_index().to_markdown(index=False, floatfmt=".5f") if len(gaps) else "(no biases runs)",
             "", "## DARTS: mean |w - 1/N| by popularity bucket (2^k: log2(1 + popularity) = k)", "",
             moved.reset_index().to_markdown(index=False) if len(moved) else "(no darts runs)",
             "", "## Hypergradient: median over batches of |second-order part| / |first-order part|", "",
             ratios.groupby(["task", "method"])["second_order_ratio"].agg(["mean", "min", "max"]).reset_index()
             .to_markdown(index=False, floatfmt=".4f") if len(ratios) else "(no bilevel runs)", ""]
    out = ROOT / "benchmarks" / "table2"
    out.mkdir(exist_ok=True)
    name = args.name or (args.dataset if len(args.tasks) > 1 else f"{args.dataset}-{args.tasks[0]}")
    with atomic_write(out / f"{name}.md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
