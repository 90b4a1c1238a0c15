"""Experiments built from runs: the overall comparison of the paper's Table 2 (more to come with the
notebooks). Each function takes a base :class:`Config` and returns tidy pandas frames."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from .atomic import atomic_write
from .config import Config
from .data import load_dataset
from .train import run

COMPARED = ("fse", "sam", "darts", "autoemb")
METRICS = {"regression": ("MSE", "online_loss"), "classification": ("CE", "online_loss")}

# The paper's Table 2 (online stage, mean, std over runs), for side-by-side display.
PAPER_TABLE2 = {
    ("ml-20m", "regression"): {"fse": (0.1840, 0.7211), "sam": (0.1819, 0.7239), "darts": (0.1812, 0.7245), "autoemb": (0.1803, 0.7259)},
    ("ml-20m", "classification"): {"fse": (1.1464, 0.4943), "sam": (1.1423, 0.4958), "darts": (1.1416, 0.4970), "autoemb": (1.1395, 0.4982)},
    ("ml-latest", "regression"): {"fse": (0.1809, 0.7260), "sam": (0.1803, 0.7275), "darts": (0.1797, 0.7280), "autoemb": (0.1790, 0.7287)},
    ("ml-latest", "classification"): {"fse": (1.1257, 0.5049), "sam": (1.1249, 0.5062), "darts": (1.1242, 0.5071), "autoemb": (1.1233, 0.5079)},
    ("netflix", "regression"): {"fse": (0.1821, 0.7290), "sam": (0.1812, 0.7302), "darts": (0.1807, 0.7309), "autoemb": (0.1779, 0.7316)},
    ("netflix", "classification"): {"fse": (1.1102, 0.5096), "sam": (1.1092, 0.5109), "darts": (1.1085, 0.5119), "autoemb": (1.1076, 0.5127)},
}


def compare(base: Config, methods=COMPARED, tasks=("regression",), seeds=(0,), results_dir=None) -> pd.DataFrame:
    """Run every (task, method, seed) on ``base.dataset`` (loaded once); one row of metrics per run.
    Each run's full results are saved under ``results_dir/<task>-<method>-seed<seed>/`` if given."""
    data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    rows = []
    for task in tasks:
        for method in methods:
            for seed in seeds:
                cfg = dataclasses.replace(base, task=task, method=method, seed=seed)
                result = run(cfg, data)
                if results_dir is not None:
                    result.save(Path(results_dir) / f"{task}-{method}-seed{seed}")
                s = result.summary
                rows.append({k: s[k] for k in ("dataset", "task", "method", "seed", "online_loss", "online_accuracy",
                                               "offline_loss", "offline_accuracy", "samples_per_second", "seconds")})
    return pd.DataFrame(rows)


def overall_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 2's layout: per (task, metric), each method's mean ± std over seeds, the relative improvement
    over FSE, and the paper's number for the same dataset where it has one."""
    rows = []
    for (dataset, task), group in runs.groupby(["dataset", "task"], sort=False):
        loss_name = METRICS[task][0]
        for metric, column, lower_better in ((f"{loss_name} loss", "online_loss", True), ("accuracy", "online_accuracy", False)):
            stats = group.groupby("method", sort=False)[column].agg(["mean", "std", "count"])
            fse = stats["mean"].get("fse")
            for method, st in stats.iterrows():
                row = {"dataset": dataset, "task": task, "metric": metric, "method": method, "mean": st["mean"],
                       "std": st["std"] if st["count"] > 1 else float("nan"), "seeds": int(st["count"])}
                if fse is not None:
                    change = (fse - st["mean"]) if lower_better else (st["mean"] - fse)
                    row["improvement_vs_fse_%"] = 100 * change / fse
                paper = PAPER_TABLE2.get((dataset, task), {}).get(method)
                row["paper"] = paper[0 if lower_better else 1] if paper else float("nan")
                rows.append(row)
    return pd.DataFrame(rows)


def save_table(table: pd.DataFrame, folder, name: str = "overall") -> None:
    """The table as CSV and as markdown, both written atomically."""
    with atomic_write(Path(folder) / f"{name}.csv", "w") as f:
        table.to_csv(f, index=False)
    with atomic_write(Path(folder) / f"{name}.md", "w") as f:
        f.write(table.to_markdown(index=False, floatfmt=".4f") + "\n")
