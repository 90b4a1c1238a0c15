"""The memory frontier: online loss against the embedding bytes a run really allocates, for FSE at several
widths, the popularity rule at several thresholds (mixed storage), hard AutoEmb at several memory penalties and
soft AutoEmb, on one stream; with the table, the Pareto set and the claims about hard AutoEmb.

Every point runs in its own process (so that its ``peak_rss_bytes`` is its own), ``workers`` at a time, or on a
dask scheduler; a run saved under ``results_dir`` with the same settings is reused.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import experiments as ex
from . import sweep
from .config import FSE_WIDTHS, HARD_PENALTIES, RULE_THRESHOLDS, Config  # the default grid
from .interactions import Interactions
from .stats import claim_row, paired_interval
from .train import RunResult

RULE_MOVE_INIT = "fresh"  # measured on ml-100k's offline stage, thresholds 8,64: fresh 0.2245, transfer 0.2325
MARGIN = 0.005  # the goal: within 0.5% of FSE-146's online MSE ...
BUDGET = 0.25  # ... at no more than a quarter of its embedding bytes
SUMMARY_KEYS = ("online_loss", "offline_loss", "online_accuracy", "embedding_bytes", "selection_bytes",
                "embedding_parameters", "peak_rss_bytes", "seconds", "samples_per_second")


@dataclass(frozen=True)
class Point:
    """One setting on the frontier: a method family and the settings that place it."""

    family: str  # fse, mf, popularity-rule, autoemb-hard, autoemb, or a reference predictor (biases, item-mean)
    setting: str  # its label: "d=16", "thresholds=8,64", "penalty=0.01", "move_init=fresh", "soft", "floor"
    overrides: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.family} {self.setting}"

    def folder(self, task: str, seed: int) -> str:
        """The run's folder name; soft AutoEmb's and the floor's are the report's own, so that a report's runs
        are reused."""
        if self.setting in ("soft", "floor"):
            return f"{task}-{self.family}-seed{seed}"
        safe = self.setting.replace("=", "").replace(",", "-").replace(".", "p")
        return f"{task}-{self.family}-{safe}-seed{seed}"


def points(fse_widths=FSE_WIDTHS, thresholds=RULE_THRESHOLDS, penalties=HARD_PENALTIES, fresh: bool = True,
           soft: bool = True, floor: bool = True, mf_widths=None) -> list[Point]:
    """The frontier's settings: FSE at each width (its tuned rates: a width setting of FSE), matrix factorisation
    (MF-d) at each of ``mf_widths`` (None: FSE's), the popularity rule
    with mixed storage at each pair of thresholds (moved ids start fresh: :data:`RULE_MOVE_INIT`), hard AutoEmb at each memory penalty (and with ``fresh`` also
    the other choice of ``move_init`` at penalty 0), with ``soft`` AutoEmb, and with ``floor`` the reference
    predictors every embedding model must beat (online biases and item means, bytes of their tables)."""
    out = [Point("fse", f"d={d}", {"method": "fse", "fse_width": int(d)}) for d in fse_widths]
    out += [Point("mf", f"d={d}", {"method": "mf", "mf_width": int(d)}) for d in (fse_widths if mf_widths is None else mf_widths)]
    out += [Point("popularity-rule", "thresholds=" + ",".join(map(str, t)),
                  {"method": "popularity-rule", "storage": "mixed", "move_init": RULE_MOVE_INIT,
                   "popularity_thresholds": tuple(int(x) for x in t)}) for t in thresholds]
    out += [Point("autoemb-hard", f"penalty={p:g}", {"method": "autoemb-hard", "memory_penalty": float(p)})
            for p in penalties]
    if fresh:
        other = "fresh" if Config.move_init == "transfer" else "transfer"
        out.append(Point("autoemb-hard", f"move_init={other}", {"method": "autoemb-hard", "move_init": other}))
    if soft:
        out.append(Point("autoemb", "soft", {"method": "autoemb"}))
    if floor:
        out += [Point(m, "floor", {"method": m}) for m in ("biases", "item-mean")]
    return out


def point_config(base: Config, point: Point, seed: int) -> Config:
    """``base`` with the point's settings (explicit: a tuned value never overrides them) and ``seed``."""
    explicit = sorted(set(base.explicit) | set(point.overrides) - {"method"})
    return dataclasses.replace(base, **point.overrides, seed=seed, explicit=tuple(explicit))


def frontier(base: Config, data: Interactions, settings=None, seeds=(0,), results_dir=None, workers: int = 1,
             reuse: bool = True, scheduler: str | None = None, log=sys.stderr) -> pd.DataFrame:
    """Run every point of ``settings`` (default :func:`points`) for every seed on ``data``; one row per run with
    the family, setting, seed and :data:`SUMMARY_KEYS`. Runs saved under ``results_dir`` are reused. Without a
    ``scheduler`` each run has its own process, ``workers`` at a time, with this process's torch threads
    shared among them; with one, the runs go there (:func:`autoemb_core.sweep.execute`; a dask worker's
    ``peak_rss_bytes`` is then its peak over the runs it has made)."""
    settings = points() if settings is None else settings
    cells = {(p, s): sweep.Cell(p.folder(base.task, s), point_config(base, p, s)) for p in settings for s in seeds}
    outcome = sweep.execute(cells.values(), data, results_dir, scheduler, workers, reuse=reuse, isolate=True, log=log)
    outcome.raise_failures(results_dir)
    rows = {key: outcome.summaries[cell.name] for key, cell in cells.items()}
    return pd.DataFrame([{"dataset": data.name, "task": base.task, "family": p.family, "setting": p.setting,
                          "point": p.name, "seed": s, **{k: rows[(p, s)].get(k) for k in SUMMARY_KEYS}}
                         for p in settings for s in seeds])


def stored_sizes(results_dir, settings, task: str, seeds, side: str = "item", min_samples: int = 200) -> pd.DataFrame:
    """Where hard selection stored the ids, by popularity: for each mixed-storage point of ``settings`` saved
    under ``results_dir``, the share of ``side``'s recorded ids held at each size in the online stage (the
    recorded one-hot weights), per popularity bucket, over ``seeds``."""
    frames = []
    for point in settings:
        if not Config(**point.overrides).mixed:
            continue
        results = {(point.name, seed): RunResult.load(Path(results_dir) / point.folder(task, seed)) for seed in seeds}
        records = ex.weight_records(results)
        chosen = ex.select_weights(records, side=side, stage="online")
        if chosen.empty:
            continue
        edges = ex.popularity_edges(chosen.drop_duplicates(["seed", "batch", "id"])["popularity"], min_samples)
        table = ex.mean_weights(chosen.assign(bucket=ex.bucketize(chosen["popularity"], edges)))
        table.columns = [c.replace("d=", "share at d=") if c.startswith("d=") else c for c in table.columns]
        frames.append(table.assign(point=point.name).set_index("point", append=True).swaplevel())
    return pd.concat(frames) if frames else pd.DataFrame()


def pareto(table: pd.DataFrame, loss: str = "online_loss", size: str = "embedding_bytes") -> pd.Series:
    """Whether each row is on the Pareto frontier: no other row has at most its bytes and a lower loss, or fewer
    bytes and no higher loss."""
    values = table[[size, loss]].to_numpy(dtype=float)
    return pd.Series([not any((b <= v[0] and l < v[1]) or (b < v[0] and l <= v[1]) for b, l in values)
                      for v in values], index=table.index)


def frontier_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per point: mean online loss with its 95% half-interval over seeds, mean bytes and parameters, the bytes'
    ratios to FSE-146 and FSE-128, the paired relative loss change against FSE-146 and whether the point is on
    the Pareto frontier."""
    reference = runs[runs["point"] == "fse d=146"].set_index("seed")
    wide = runs[runs["point"] == "fse d=128"]
    rows = []
    for name, group in runs.groupby("point", sort=False):
        losses = group["online_loss"].to_numpy(dtype=float)
        half = _half_interval(losses)
        by_seed = group.set_index("seed")
        seeds = sorted(set(by_seed.index) & set(reference.index))
        change = ((by_seed.loc[seeds, "online_loss"] - reference.loc[seeds, "online_loss"])
                  / reference.loc[seeds, "online_loss"]).to_numpy(dtype=float) if seeds else np.array([])
        bytes_ = float(group["embedding_bytes"].mean())
        rows.append({"point": name, "family": group["family"].iloc[0], "setting": group["setting"].iloc[0],
                     "online_loss": float(losses.mean()), "±95%": half, "seeds": len(losses),
                     "embedding_bytes": bytes_, "embedding_parameters": float(group["embedding_parameters"].mean()),
                     "vs_fse146_bytes": bytes_ / reference["embedding_bytes"].mean() if len(reference) else math.nan,
                     "vs_fse128_bytes": bytes_ / wide["embedding_bytes"].mean() if len(wide) else math.nan,
                     "vs_fse146_loss": float(change.mean()) if len(change) else math.nan,
                     "vs_fse146_loss_±95%": _half_interval(change),
                     "peak_rss_mb": float(pd.to_numeric(group["peak_rss_bytes"]).mean()) / 2 ** 20,
                     "seconds": float(group["seconds"].mean())})
    table = pd.DataFrame(rows)
    table["pareto"] = pareto(table)
    return table


def _half_interval(values) -> float:
    """Half the width of the 95% t interval of the mean of ``values`` (NaN below 2 values)."""
    r = paired_interval(values, np.zeros(len(values)))
    return (r["high"] - r["low"]) / 2


def _per_seed(runs: pd.DataFrame, point: str, value: str = "online_loss") -> pd.Series:
    return runs[runs["point"] == point].set_index("seed")[value]


def frontier_claims(runs: pd.DataFrame) -> list[dict]:
    """The claims about hard AutoEmb, rows of :data:`autoemb_core.report.COLUMNS` (positive favours hard AutoEmb):

    - **the goal**: the hard setting chosen on the offline stage among those within a quarter of FSE-146's bytes
      has an online loss within 0.5% of FSE-146's: effect = (FSE-146 - hard) / FSE-146 + 0.5% per seed;
    - **hard costs nothing**: hard AutoEmb with no memory penalty has an online loss within 0.5% of soft
      AutoEmb's (the same controllers, one stored space per id instead of all three);
    - **on the frontier**, per hard setting: against the best baseline (FSE-d or the popularity rule, lowest mean
      online loss) that needs no more bytes: effect = (baseline - hard) / baseline per seed; reproduced when hard
      AutoEmb is below it, contradicted when dominated, inconclusive on a tie."""
    rows = []
    dataset, task = runs["dataset"].iloc[0], runs["task"].iloc[0]
    metric = "online MSE, relative" if task == "regression" else "online CE, relative"
    means = runs.groupby("point").agg(loss=("online_loss", "mean"), offline=("offline_loss", "mean"),
                                      bytes=("embedding_bytes", "mean"), family=("family", "first"))
    if "fse d=146" not in means.index:
        return rows
    fse = _per_seed(runs, "fse d=146")
    hard = means[means["family"] == "autoemb-hard"]
    within = hard[hard["bytes"] <= BUDGET * means.loc["fse d=146", "bytes"]]
    if len(within):
        chosen = within["offline"].idxmin()
        h = _per_seed(runs, chosen)
        seeds = sorted(set(h.index) & set(fse.index))
        rows.append(claim_row("hard AutoEmb within 0.5% of FSE-146 at <= 1/4 of its bytes", dataset, task,
                               metric + f" + {MARGIN:.1%} margin", chosen, "fse d=146",
                               ((fse[seeds] - h[seeds]) / fse[seeds]).to_numpy() + MARGIN))
    if {"autoemb-hard penalty=0", "autoemb soft"} <= set(means.index):
        h, soft = _per_seed(runs, "autoemb-hard penalty=0"), _per_seed(runs, "autoemb soft")
        seeds = sorted(set(h.index) & set(soft.index))
        rows.append(claim_row("hard AutoEmb (no penalty) within 0.5% of soft AutoEmb", dataset, task,
                              metric + f" + {MARGIN:.1%} margin", "autoemb-hard penalty=0", "autoemb soft",
                              ((soft[seeds] - h[seeds]) / soft[seeds]).to_numpy() + MARGIN))
    baselines = means[means["family"].isin(["fse", "popularity-rule"])]
    for name, point in hard.iterrows():
        cheaper = baselines[baselines["bytes"] <= point["bytes"]]
        if not len(cheaper):
            continue
        best = cheaper["loss"].idxmin()
        h, b = _per_seed(runs, name), _per_seed(runs, best)
        seeds = sorted(set(h.index) & set(b.index))
        rows.append(claim_row("hard AutoEmb is on the FSE-d / popularity-rule frontier", dataset, task, metric,
                               name, best, ((b[seeds] - h[seeds]) / b[seeds]).to_numpy()))
    return rows

