"""The paper's experiments, built from runs; the notebooks under ``notebooks/`` call one function per step.

- Figure 1, the preliminary study: :func:`preliminary_split`, :func:`fit_until_stop`, :func:`preliminary_study`,
  :func:`crossover`.
- Table 2, the overall comparison: :func:`compare`, :func:`overall_table`, :func:`paper_table`.
- Figures 6 and 7, popularity: :func:`run_methods`, :func:`popularity_metrics`, :func:`weight_records`,
  :func:`select_weights`.
- Figure 8, data efficiency: :func:`learning_curves`.

Each function takes a base :class:`Config` or runs' results and returns tidy pandas frames; the figures are
drawn by :mod:`autoemb_core.plots`.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from . import sweep
from .atomic import atomic_write
from .config import FIGURE1, Config
from .data import load_dataset
from .interactions import DataError, Interactions
from .learner import Learner
from .methods import FIXED, PAPER, TABLE2, display
from .model import loss_and_correct
from .progress import Bar
from .stream import Stream
from .train import StreamingTrainer

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

# its ± (the loss's std over runs), in the same order: our seed spread is set beside it
PAPER_TABLE2_LOSS_STD = {
    ("ml-20m", "regression"): {"fse": 0.0003, "sam": 0.0002, "darts": 0.0003, "autoemb": 0.0002},
    ("ml-20m", "classification"): {"fse": 0.0006, "sam": 0.0002, "darts": 0.0003, "autoemb": 0.0005},
    ("ml-latest", "regression"): {"fse": 0.0002, "sam": 0.0003, "darts": 0.0002, "autoemb": 0.0001},
    ("ml-latest", "classification"): {"fse": 0.0003, "sam": 0.0002, "darts": 0.0002, "autoemb": 0.0002},
    ("netflix", "regression"): {"fse": 0.0003, "sam": 0.0001, "darts": 0.0001, "autoemb": 0.0002},
    ("netflix", "classification"): {"fse": 0.0003, "sam": 0.0001, "darts": 0.0003, "autoemb": 0.0002},
}


RUN_COLUMNS = ("dataset", "task", "method", "seed", "online_loss", "online_accuracy", "offline_loss", "offline_accuracy",
               "samples_per_second", "seconds")


def compare(base: Config, methods=TABLE2, tasks=("regression",), seeds=(0,), results_dir=None,
            data: Interactions | None = None, scheduler: str | None = None, workers: int = 1,
            gpus_per_run: float = 0, reuse: bool = False, log=sys.stderr) -> pd.DataFrame:
    """Run every (task, method, seed) on ``base.dataset`` (loaded once, unless ``data`` is given); one row of
    metrics per run. Each run's full results are saved under ``results_dir/<task>-<method>-seed<seed>/`` if
    given (and, with ``reuse``, a run saved there with the same settings is not run again). The runs go to
    ``scheduler`` (:func:`autoemb_core.sweep.execute`; None: in this process). A run that fails is a row with
    its ``error`` and no metrics, and the others go on."""
    shipped = data is not None
    if data is None:
        data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    cells = sweep.grid(base, methods, tasks, seeds)
    outcome = sweep.execute(cells, data, results_dir, scheduler, workers, gpus_per_run, reuse=reuse,
                            ship_data=shipped, log=log)
    rows = []
    for cell in cells:
        s = outcome.summaries.get(cell.name)
        if s is not None:
            rows.append({k: s[k] for k in RUN_COLUMNS})
        else:
            rows.append({"dataset": data.name, "task": cell.cfg.task, "method": cell.cfg.method, "seed": cell.cfg.seed,
                         "error": sweep.error_line(outcome.failed[cell.name])})
    return pd.DataFrame(rows, columns=[*RUN_COLUMNS, *(("error",) if outcome.failed else ())])


def iter_runs(base: Config, methods=PAPER, seeds=(0,), data: Interactions | None = None, results_dir=None,
              reuse: bool = False, scheduler: str | None = None, workers: int = 1, gpus_per_run: float = 0):
    """Run each (method, seed) with ``base``'s task on ``data`` (default: ``base``'s dataset, loaded once),
    yielding ``((method, seed), RunResult)``. With ``results_dir``, each run is also saved under
    ``results_dir/<task>-<method>-seed<seed>/``; with ``reuse``, a run already saved there with the same
    settings (:meth:`RunResult.saved`) is loaded instead of run again. With a ``scheduler``
    or ``workers > 1`` (:func:`autoemb_core.sweep.execute`) the runs go there and need ``results_dir``; a failed
    run raises after the others have finished."""
    shipped = data is not None
    if data is None:
        data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    elif base.max_interactions:
        data = data.head(base.max_interactions)
    if (scheduler is not None or workers > 1) and results_dir is None:
        raise DataError("runs in other processes need a results folder to come back through",
                        hint="give results_dir, or no scheduler and workers=1")
    cells = sweep.grid(base, methods, [base.task], seeds)
    outcome = sweep.execute(cells, data, results_dir, scheduler, workers, gpus_per_run, reuse=reuse, keep=True,
                            ship_data=shipped)
    outcome.raise_failures(results_dir)
    for cell in cells:
        yield (cell.cfg.method, cell.cfg.seed), outcome.result(cell, results_dir)


def run_methods(base: Config, methods=PAPER, seeds=(0,), data: Interactions | None = None,
                results_dir=None, scheduler: str | None = None, workers: int = 1) -> dict:
    """:func:`iter_runs` kept in memory: ``{(method, seed): RunResult}``, for the per-sample (Figures 6, 7)
    and per-batch (Figure 8) studies."""
    return dict(iter_runs(base, methods, seeds, data, results_dir, scheduler=scheduler, workers=workers))


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
                    row["improvement_vs_fse_%"] = 100 * change / fse if fse else float("nan")
                paper = PAPER_TABLE2.get((dataset, task), {}).get(method)
                row["paper"] = paper[0 if lower_better else 1] if paper else float("nan")
                rows.append(row)
    return pd.DataFrame(rows)


def save_tables(folder, **tables: pd.DataFrame) -> None:
    """Each ``name=frame`` as ``<name>.csv`` and ``<name>.md`` (:func:`save_table`); a frame with a named
    index (such as :func:`paper_table`'s) keeps it as columns."""
    for name, table in tables.items():
        save_table(table.reset_index() if any(table.index.names) else table, folder, name)


def save_table(table: pd.DataFrame, folder, name: str = "overall") -> None:
    """The table as CSV and as markdown, both written atomically."""
    with atomic_write(Path(folder) / f"{name}.csv", "w") as f:
        table.to_csv(f, index=False)
    with atomic_write(Path(folder) / f"{name}.md", "w") as f:
        f.write(table.to_markdown(index=False, floatfmt=".4f") + "\n")


# ---------------------------------------------------------------------------------------------
# Table 2 laid out like the paper

def paper_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`overall_table` laid out like the paper's Table 2: one row block per (dataset, task, metric),
    one column per method. The rows: ``ours`` (mean ± std over seeds), ``ours vs FSE`` (relative improvement,
    positive = better), and, where the paper has the dataset, ``paper`` and ``paper vs FSE``."""
    methods = list(dict.fromkeys(table["method"]))
    rows = []
    for (dataset, task, metric), block in table.groupby(["dataset", "task", "metric"], sort=False):
        block = block.set_index("method")
        key = (dataset, task.capitalize(), metric[0].upper() + metric[1:])
        ours = {m: _mean_std(block.at[m, "mean"], block.at[m, "std"]) for m in block.index}
        rows.append((*key, "ours", ours))
        if "improvement_vs_fse_%" in block:
            rows.append((*key, "ours vs FSE", {m: _percent(block.at[m, "improvement_vs_fse_%"])
                                               for m in block.index if m != "fse"}))
        paper = block["paper"].dropna()
        if len(paper):
            rows.append((*key, f"paper ({dataset})", {m: f"{v:.4f}" for m, v in paper.items()}))
            if "fse" in paper:
                lower_better = "loss" in metric
                change = {m: (paper["fse"] - v if lower_better else v - paper["fse"]) / paper["fse"] * 100
                          for m, v in paper.items() if m != "fse"}
                rows.append((*key, "paper vs FSE", {m: _percent(v) for m, v in change.items()}))
    frame = pd.DataFrame([values for *_, values in rows], columns=methods)
    frame.index = pd.MultiIndex.from_tuples([tuple(r[:4]) for r in rows], names=["dataset", "task", "metric", "row"])
    return frame.fillna("").rename(columns=lambda m: display(m))


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.4f}" if pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def _percent(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.2f}%"


# ---------------------------------------------------------------------------------------------
# Figure 1: fixed dimensions trained to convergence, x ratings per study user, a fixed test part per user


@dataclass
class PreliminarySplit:
    """Figure 1's split, as stream positions. Each study user's ratings are shuffled once (seeded): the first
    ``n_test`` are its test part and the next ``n_validation`` its validation part (the same for every x);
    the next x its training part (nested: the set for x holds the set for x/2). ``others`` holds every
    interaction of the other users, which every training set contains."""

    users: np.ndarray
    test: np.ndarray
    validation: np.ndarray
    train: dict  # x -> the study users' training positions
    others: np.ndarray

    def training(self, x: int) -> np.ndarray:
        """Every position a model for ``x`` trains on: the other users' interactions and x per study user."""
        return np.sort(np.concatenate([self.others, self.train[x]]))


def preliminary_split(data: Interactions, n_test: int = FIGURE1.n_test, train_sizes=FIGURE1.train_sizes,
                      seed: int = 0, n_validation: int = FIGURE1.n_validation) -> PreliminarySplit:
    """The study users are those with at least ``n_test + n_validation + max(train_sizes)`` ratings."""
    train_sizes = sorted(int(x) for x in train_sizes)
    counts = np.bincount(data.user, minlength=data.n_users)
    need = n_test + n_validation + train_sizes[-1]
    users = np.flatnonzero(counts >= need)
    if len(users) == 0:
        raise DataError(f"no user of {data.name!r} has the n_test + n_validation + max(train_sizes) = {need} "
                        f"ratings the preliminary study needs (the most any user has is {counts.max(initial=0)})",
                        hint="lower n_test, n_validation or train_sizes, or raise max_interactions")
    rng = np.random.default_rng(seed)
    by_user = np.argsort(data.user, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    test, validation, train = [], [], {x: [] for x in train_sizes}
    for u in users:
        own = rng.permutation(by_user[starts[u]:starts[u + 1]])
        test.append(own[:n_test])
        validation.append(own[n_test:n_test + n_validation])
        for x in train_sizes:
            train[x].append(own[n_test + n_validation:n_test + n_validation + x])
    study = np.zeros(data.n_users, dtype=bool)
    study[users] = True
    return PreliminarySplit(users, np.sort(np.concatenate(test)), np.sort(np.concatenate(validation)),
                            {x: np.sort(np.concatenate(p)) for x, p in train.items()},
                            np.flatnonzero(~study[data.user]))


def preliminary_plan(data: Interactions, n_test: int = FIGURE1.n_test, train_sizes=FIGURE1.train_sizes,
                     seed: int = 0, n_validation: int = FIGURE1.n_validation) -> pd.DataFrame:
    """The sizes of Figure 1's split, per x: study users, their training, validation and test ratings, and
    the other users' interactions in every training set. Raises the split's error early when no user has
    enough ratings."""
    split = preliminary_split(data, n_test, train_sizes, seed, n_validation)
    return pd.DataFrame({"study users": len(split.users), "study training ratings": [len(p) for p in split.train.values()],
                         "other users' interactions": len(split.others), "validation ratings": len(split.validation),
                         "test ratings": len(split.test)}, index=pd.Index(list(split.train), name="x"))


def fit_until_stop(learner: Learner, stream: Stream, positions: np.ndarray, validation: np.ndarray, test: np.ndarray,
                   max_epochs: int = 20, patience: int | None = 2, seed: int = 0) -> dict:
    """Train ``learner`` in epochs over ``positions`` of ``stream`` (shuffled each epoch, seeded), until the mean
    loss on ``validation`` has not improved for ``patience`` epochs; returns the test loss and accuracy at the
    best validation epoch, that epoch and its validation loss. ``patience`` None: no early stopping, all
    ``max_epochs`` epochs, scored after the last. Nothing is predicted or scored online: this is offline
    training, for Figure 1's capacity study."""
    rng = np.random.default_rng([seed, 7])

    def score(part):
        view = stream.view(torch.as_tensor(part, device=stream.device))
        with torch.no_grad():
            loss, correct = loss_and_correct(learner.predict(view)[0], view.target, stream.task)
        return float(loss.mean()), float(correct.float().mean())

    best = {"validation_loss": float("inf"), "epoch": 0}
    for epoch in range(1, max_epochs + 1):
        order = torch.as_tensor(rng.permutation(positions), device=stream.device)
        for chunk in order.split(learner.cfg.batch_size):
            learner.learn(stream.view(chunk))
        if patience is None:
            continue
        val_loss = score(validation)[0]
        if val_loss < best["validation_loss"]:
            loss, accuracy = score(test)
            best = {"validation_loss": val_loss, "epoch": epoch, "loss": loss, "accuracy": accuracy}
        elif epoch - best["epoch"] >= patience:
            break
    if patience is None:
        loss, accuracy = score(test)
        best = {"validation_loss": score(validation)[0], "epoch": epoch, "loss": loss, "accuracy": accuracy}
    return {**best, "epochs": epoch}


def preliminary_study(base: Config, data: Interactions, methods=FIXED,
                      train_sizes=FIGURE1.train_sizes, n_test: int = FIGURE1.n_test, seeds=(0,),
                      n_validation: int = FIGURE1.n_validation, max_epochs: int = FIGURE1.max_epochs,
                      patience: int = FIGURE1.patience, l2_grid=FIGURE1.l2_grid,
                      protocol: str = "capacity", workers: int = 1, done: pd.DataFrame | None = None,
                      checkpoint=None) -> pd.DataFrame:
    """Figure 1 as a capacity study: for each seed, x and fixed dimension, fresh models trained by
    :func:`fit_until_stop` on every interaction of the other users plus x ratings per study user, one per
    ``embedding_l2`` of ``l2_grid``, early-stopped on the study users' validation ratings; the one with the
    best validation loss is scored on their test ratings (the same budget for every dimension). One row per
    (seed, x, dimension). ``protocol`` paper: the paper's likely protocol instead, ``max_epochs`` epochs with no
    early stopping and no L2 (the validation ratings are still held out, so both protocols train on the same
    ratings). ``workers`` > 1 trains that many (seed, x, dimension) cells at a time, each in a spawned process
    with an equal share of this one's threads (or ``base.threads``); every model is seeded alike, so the rows
    are those of one process. ``done``: rows of an earlier, unfinished study with these settings, whose cells are
    not trained again; ``checkpoint(frame)`` is called with the rows finished so far after each cell (so that a
    killed study resumes)."""
    if protocol == "paper":
        l2_grid, patience = (0.0,), None
    cells = []
    for seed in seeds:
        split = preliminary_split(data, n_test, train_sizes, seed, n_validation)
        for x in split.train:
            cells += [(_ModelCell(method, seed, int(x), split.training(x), split.validation, split.test),
                       len(split.users)) for method in methods]
    saved = {} if done is None else {(r["method"], int(r["seed"]), int(r["train_size"])): r
                                     for r in done.to_dict("records")}
    rows = [saved.get(cell[:3]) for cell, _ in cells]
    todo = [i for i, row in enumerate(rows) if row is None]
    bar = Bar(len(cells), "Figure 1 models", "models", initial=len(cells) - len(todo), disable=not base.progress)
    fit = dict(max_epochs=max_epochs, patience=patience, l2_grid=tuple(l2_grid))
    base = dataclasses.replace(base, progress=False, checkpoint_dir=None, resume=False)

    def finished(i: int, row: dict) -> None:
        cell, users = cells[i]
        rows[i] = {**row, "protocol": protocol, "users": users, "train_ratings": len(cell.positions),
                   "test_ratings": len(cell.test)}
        bar.update()
        if checkpoint is not None:
            checkpoint(pd.DataFrame([r for r in rows if r is not None]))

    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            finished(i, _preliminary_cell(base, data, cells[i][0], **fit))
    else:
        threads = base.threads or max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_preliminary_cell, dataclasses.replace(base, threads=threads), data, cells[i][0],
                                   **fit): i for i in todo}
            for future in as_completed(futures):
                finished(futures[future], future.result())  # a failed model stops the study, with its error
    bar.close()
    return pd.DataFrame(rows)


class _ModelCell(NamedTuple):
    """One (seed, x, dimension) cell of :func:`preliminary_study`, as stream positions."""

    method: str
    seed: int
    x: int
    positions: np.ndarray  # what it trains on
    validation: np.ndarray
    test: np.ndarray


def _preliminary_cell(base: Config, data: Interactions, cell: _ModelCell, max_epochs: int, patience: int | None,
                      l2_grid: tuple) -> dict:
    """One cell of :func:`preliminary_study`: a model per ``embedding_l2``, the best on validation kept; a
    function of its arguments alone, so that it runs alike in this process or another."""
    method, seed, x, positions, validation, test = cell
    before, fits = torch.get_num_threads(), []
    try:
        torch.set_num_threads(base.threads or before)
        for l2 in l2_grid:
            cfg = dataclasses.replace(base, method=method, seed=seed, embedding_l2=float(l2))
            began = time.perf_counter()
            trainer = StreamingTrainer(data, cfg)
            found = fit_until_stop(trainer.learner, trainer.stream, positions, validation, test, max_epochs,
                                   patience, seed)
            fits.append({**found, "embedding_l2": float(l2), "seconds": time.perf_counter() - began})
    finally:
        torch.set_num_threads(before)
    best = {**min(fits, key=lambda f: f["validation_loss"]), "seconds": sum(f["seconds"] for f in fits)}
    return {"method": method, "dimension": cfg.width, "train_size": x, "seed": seed, **best}


def crossover(study: pd.DataFrame) -> pd.DataFrame:
    """Per x: each dimension's loss and accuracy (means over seeds) and the best dimension by each."""
    mean = study.groupby(["train_size", "dimension"])[["loss", "accuracy"]].mean()
    loss, accuracy = mean["loss"].unstack("dimension"), mean["accuracy"].unstack("dimension")
    table = pd.concat([loss.add_prefix("loss d="), accuracy.add_prefix("accuracy d=")], axis=1)
    table = table.round(4)
    table["best by loss"] = loss.idxmin(axis=1)
    table["best by accuracy"] = accuracy.idxmax(axis=1)
    return table


# ---------------------------------------------------------------------------------------------
# Figures 6 and 7: online metrics and selection weights by popularity


def popularity_edges(values, min_samples: int = 200) -> np.ndarray:
    """Bucket lower bounds 0, 1, 2, 4, 8, ... (powers of two); the last, open-ended bucket still holds at
    least ``min_samples`` of ``values`` (the first bucket always exists)."""
    values = np.asarray(values)
    edges = [0]
    for k in range(63):
        if np.count_nonzero(values >= 2 ** k) < min_samples:
            break
        edges.append(2 ** k)
    return np.asarray(edges, dtype=np.int64)


def bucket_labels(edges) -> list[str]:
    """``0``, ``1``, ``2-3``, ``4-7``, ..., ``≥64``."""
    edges = [int(e) for e in edges]
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None]):
        labels.append(f"≥{lo}" if hi is None else str(lo) if hi - 1 == lo else f"{lo}-{hi - 1}")
    return labels


def bucketize(values, edges) -> pd.Categorical:
    """Each value's bucket label, as an ordered categorical."""
    codes = np.searchsorted(np.asarray(edges), np.asarray(values), side="right") - 1
    return pd.Categorical.from_codes(codes, categories=bucket_labels(edges), ordered=True)


def sample_edges(results: dict, side: str = "user", min_samples: int = 200) -> np.ndarray:
    """:func:`popularity_edges` of the online samples' ``side`` popularity (the same stream in every run)."""
    if side not in ("user", "item"):
        raise DataError(f"side must be 'user' or 'item', got {side!r}")
    first = next(iter(results.values()))
    return popularity_edges(first.samples[f"{side}_popularity"], min_samples)


def popularity_metrics(results: dict, side: str = "user", edges=None, min_samples: int = 200) -> pd.DataFrame:
    """Figure 6: each run's online loss and accuracy per popularity bucket of ``side`` (popularity before the
    sample's batch). Buckets from :func:`sample_edges` unless ``edges`` is given."""
    column = f"{side}_popularity"
    if edges is None:
        edges = sample_edges(results, side, min_samples)
    frames = []
    for (method, seed), result in results.items():
        samples = result.samples
        grouped = samples.groupby(bucketize(samples[column], edges), observed=True)
        frame = grouped.agg(samples=("loss", "size"), loss=("loss", "mean"), accuracy=("correct", "mean"))
        frame = frame.rename_axis("bucket").reset_index()
        frame.insert(0, "seed", seed)
        frame.insert(0, "method", method)
        frame["task"] = result.summary["task"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def popularity_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Figure 6 as a table: per bucket, the samples and each method's loss and accuracy (means over seeds)."""
    mean = metrics.groupby(["bucket", "method"], observed=True, sort=False)[["loss", "accuracy"]].mean()
    table = mean.unstack("method").round(4)
    table.columns = [f"{metric} {display(m)}" for metric, m in table.columns]
    samples = metrics.groupby("bucket", observed=True)["samples"].first()
    return pd.concat([samples, table], axis=1).rename_axis("popularity")


def weight_records(results: dict) -> pd.DataFrame:
    """Every recorded selection weight, long: method, seed, stage, batch, seen, side, id, popularity,
    dimension, weight (runs without weights, fse and fixed-d, have none)."""
    frames = []
    for (method, seed), result in results.items():
        alphas = result.alphas
        if alphas is None or alphas.empty:
            continue
        columns = [c for c in alphas.columns if c.startswith("w") and c[1:].isdigit()]
        long = alphas.melt(id_vars=["batch", "seen", "side", "id", "popularity"], value_vars=columns,
                           var_name="dimension", value_name="weight")
        long["dimension"] = long["dimension"].str[1:].astype(int)
        long = long.merge(result.batches[["batch", "stage"]], on="batch", how="left")
        long.insert(0, "seed", seed)
        long.insert(0, "method", method)
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["method", "seed", "batch", "seen", "side", "id", "popularity", "dimension",
                                     "weight", "stage"])
    return pd.concat(frames, ignore_index=True)


def select_weights(records: pd.DataFrame, method: str | None = None, side: str | None = None,
                   popularity: tuple | None = None, seen: int | None = None, window: int | None = None,
                   stage: str | None = None, edges=None) -> pd.DataFrame:
    """The weight records of ``method`` and ``side`` whose id popularity lies in ``popularity = (lo, hi)``
    (inclusive; ``hi=None`` is open), recorded at a stream position in ``(seen - window, seen]`` (``window``
    None: all up to ``seen``), in ``stage``. With ``edges``, a ``bucket`` column is added."""
    keep = pd.Series(True, index=records.index)
    if method is not None:
        keep &= records["method"] == method
    if side is not None:
        keep &= records["side"] == side
    if stage is not None:
        keep &= records["stage"] == stage
    if popularity is not None:
        lo, hi = popularity
        keep &= records["popularity"] >= lo
        if hi is not None:
            keep &= records["popularity"] <= hi
    if seen is not None:
        keep &= records["seen"] <= seen
        if window is not None:
            keep &= records["seen"] > seen - window
    selected = records[keep]
    if edges is not None:
        selected = selected.assign(bucket=bucketize(selected["popularity"], edges))
    return selected.reset_index(drop=True)


def mean_weights(selection: pd.DataFrame, by=("bucket",)) -> pd.DataFrame:
    """Mean weight of each dimension (columns ``d=2``, ...) per group of ``by`` (rows), with the number of
    (id, recording) pairs behind each row."""
    by = list(by)
    if selection.empty:
        return pd.DataFrame(columns=["records"])
    table = selection.pivot_table(index=by, columns="dimension", values="weight", aggfunc="mean", observed=True)
    table.columns = [f"d={d}" for d in table.columns]
    counts = selection.groupby(by, observed=True)["id"].size() // max(selection["dimension"].nunique(), 1)
    return table.round(4).assign(records=counts)


# ---------------------------------------------------------------------------------------------
# Figure 8: the offline stage's progress


def learning_curves(results: dict, stage: str = "offline", points: int = 20) -> pd.DataFrame:
    """Figure 8: each run's evaluate-then-train metrics along ``stage``, in ``points`` equal slices of the
    stream: per slice the loss and accuracy over its samples, at ``seen`` = interactions seen by its end."""
    frames = []
    for (method, seed), result in results.items():
        b = result.batches[result.batches["stage"] == stage]
        if b.empty:
            continue
        lo, hi = int(b["seen"].iloc[0] - b["size"].iloc[0]), int(b["seen"].iloc[-1])
        edges = np.linspace(lo, hi, points + 1)
        slice_ = np.clip(np.searchsorted(edges, b["seen"].to_numpy(), side="left") - 1, 0, points - 1)
        weighted = b.assign(slice=slice_, loss=b["loss"] * b["size"], accuracy=b["accuracy"] * b["size"])
        g = weighted.groupby("slice").agg(seen=("seen", "max"), samples=("size", "sum"), loss=("loss", "sum"),
                                         accuracy=("accuracy", "sum"))
        g["loss"] /= g["samples"]
        g["accuracy"] /= g["samples"]
        g = g.reset_index(drop=True)
        g.insert(0, "seed", seed)
        g.insert(0, "method", method)
        g["task"] = result.summary["task"]
        frames.append(g)
    return pd.concat(frames, ignore_index=True)


def curve_table(curves: pd.DataFrame, metric: str = "loss") -> pd.DataFrame:
    """Figure 8 as a table: ``metric`` per point of the stream (rows) and method (columns), means over seeds."""
    table = curves.groupby(["seen", "method"], sort=False)[metric].mean().unstack("method").round(4)
    return table.rename(columns=lambda m: display(m)).rename_axis(None, axis=1)


def save_frame(frame: pd.DataFrame, folder, name: str) -> Path:
    """A result frame as ``<name>.csv``, written atomically."""
    path = Path(folder) / f"{name}.csv"
    with atomic_write(path, "w") as f:
        frame.to_csv(f, index=False)
    return path
