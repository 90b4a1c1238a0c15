"""The reproduction report: every claim of the paper as a paired per-seed effect with its interval, the
smallest effect its seeds detect, the paper's own effect and a verdict; written as ``claims.csv`` and
``REPORT.md`` beside the figures.

Each effect is signed so that a positive value favours the paper's claim, and is a relative change where the
paper's own effect is one (Table 2's numbers on MovieLens-20m): for "A has lower loss than B" it is
``(loss_B - loss_A) / loss_B`` per seed. The claim functions take the experiments' tidy frames and return
rows of :data:`COLUMNS`; :func:`report` runs what is missing and writes everything.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import experiments as ex
from . import frontier as fr
from .atomic import atomic_write, write_json_atomic
from .config import FIGURE1, Config, Figure1Settings, resolve
from .methods import FIXED, PAPER, RIVALS, TABLE2
from .data import load_dataset
from .interactions import DataError, Interactions
from .stats import INCONCLUSIVE, REPRODUCED, claim_row as _row, seeds_needed
from .train import versions

COLUMNS = ["claim", "dataset", "task", "metric", "method", "comparator", "bucket", "effect", "ci_low", "ci_high",
           "mde", "n_seeds", "paper_effect", "verdict"]
ORDERING = (("autoemb", "darts"), ("darts", "sam"), ("sam", "fse"), ("autoemb", "fse"))  # Table 2: A < B in loss
PAPER_DATASET = "ml-20m"  # where paper_effect comes from


def _advantage(frame: pd.DataFrame, method: str, comparator: str, value: str = "loss") -> np.ndarray:
    """Per seed (paired on the seeds both have), ``(comparator - method) / comparator`` of ``value``."""
    a = frame[frame["method"] == method].set_index("seed")[value]
    b = frame[frame["method"] == comparator].set_index("seed")[value]
    seeds = sorted(set(a.index) & set(b.index))
    return ((b[seeds] - a[seeds]) / b[seeds]).to_numpy()


def _loss_name(task: str) -> str:
    return {"regression": "MSE", "classification": "CE"}[task]


def paper_effect(task: str, method: str, comparator: str) -> float | None:
    """The paper's relative loss advantage of ``method`` over ``comparator`` on MovieLens-20m (Table 2)."""
    paper = ex.PAPER_TABLE2.get((PAPER_DATASET, task), {})
    if method not in paper or comparator not in paper:
        return None
    return (paper[comparator][0] - paper[method][0]) / paper[comparator][0]


# -- the claims ----------------------------------------------------------------------------------
def table2_claims(runs: pd.DataFrame) -> list[dict]:
    """Table 2's ordering AutoEmb < DARTS < SAM < FSE in online loss, pair by pair (and AutoEmb against FSE),
    and AutoEmb against the controls; ``runs`` is :func:`experiments.compare`'s frame."""
    rows = []
    for (dataset, task), group in runs.groupby(["dataset", "task"], sort=False):
        frame = group.rename(columns={"online_loss": "loss"})
        present = set(frame["method"])
        metric = f"online {_loss_name(task)}, relative"
        for name, pairs in (("Table 2: ordering", ORDERING), ("AutoEmb beats the controls", [("autoemb", c) for c in RIVALS])):
            for method, comparator in pairs:
                if {method, comparator} <= present:
                    rows.append(_row(name, dataset, task, metric, method, comparator,
                                     _advantage(frame, method, comparator), paper_effect(task, method, comparator)))
    return rows


def popularity_claims(metrics: pd.DataFrame, dataset: str, side: str = "user", method: str = "autoemb",
                      comparators=("fse", "sam")) -> list[dict]:
    """Figure 6: ``method``'s online loss advantage in each popularity bucket; ``metrics`` is
    :func:`experiments.popularity_metrics`'s frame."""
    rows = []
    for task, frame in metrics.groupby("task", sort=False):
        for comparator in comparators:
            if not {method, comparator} <= set(frame["method"]):
                continue
            for bucket, part in frame.groupby("bucket", observed=True, sort=True):
                rows.append(_row("Figure 6: advantage by popularity", dataset, task,
                                 f"online {_loss_name(task)} by {side} popularity, relative", method, comparator,
                                 _advantage(part, method, comparator), bucket=str(bucket)))
    return rows


def weight_slopes(records: pd.DataFrame, method: str = "autoemb", stage: str = "online") -> pd.DataFrame:
    """Per seed and side, the least-squares slope of the weight on larger dimensions, ``sum_k w_k k/(N-1)``
    (0: all weight on the smallest space, 1: all on the largest), against ``log2(1 + popularity)``, over
    ``method``'s recorded weights in ``stage``."""
    part = records[(records["method"] == method) & (records["stage"] == stage)]
    if part.empty:
        return pd.DataFrame(columns=["seed", "side", "slope", "records"])
    dims = sorted(part["dimension"].unique())
    rank = part["dimension"].map({d: k / max(len(dims) - 1, 1) for k, d in enumerate(dims)})
    part = part.assign(larger=part["weight"] * rank)
    per_id = part.groupby(["seed", "side", "batch", "id"], sort=False).agg(larger=("larger", "sum"),
                                                                          popularity=("popularity", "first"))
    rows = []
    for (seed, side), g in per_id.reset_index().groupby(["seed", "side"]):
        x, y = np.log2(1.0 + g["popularity"].to_numpy(float)), g["larger"].to_numpy(float)
        slope = float(np.cov(x, y, bias=True)[0, 1] / x.var()) if x.var() > 0 else float("nan")
        rows.append({"seed": seed, "side": side, "slope": slope, "records": len(g)})
    return pd.DataFrame(rows)


def weight_claims(slopes: pd.DataFrame, dataset: str, task: str, method: str = "autoemb") -> list[dict]:
    """Figure 7: the weight moves to larger dimensions as popularity grows (a positive slope)."""
    return [_row("Figure 7: weight moves to larger dimensions", dataset, task,
                 f"slope of the weight on larger dimensions per doubling of {side} popularity", method, "", g["slope"])
            for side, g in slopes.groupby("side")]


def early_losses(results: dict, fraction: float = 0.2) -> pd.DataFrame:
    """Each run's loss over the first ``fraction`` of its offline stage (evaluate-then-train), at least its
    first batch."""
    rows = []
    for (method, seed), result in results.items():
        b = result.batches[result.batches["stage"] == "offline"]
        if len(b):
            early = b[b["seen"] <= max(fraction * b["seen"].iloc[-1], b["seen"].iloc[0])]
            rows.append({"method": method, "seed": seed, "task": result.summary["task"],
                         "loss": float((early["loss"] * early["size"]).sum() / early["size"].sum())})
    return pd.DataFrame(rows, columns=["method", "seed", "task", "loss"])


def early_claims(losses: pd.DataFrame, dataset: str, fraction: float = 0.2, method: str = "autoemb",
                 comparators=("fse", "sam")) -> list[dict]:
    """Figure 8: AutoEmb's advantage in the early, data-poor part of the offline stage."""
    rows = []
    for task, frame in losses.groupby("task", sort=False):
        for comparator in comparators:
            if {method, comparator} <= set(frame["method"]):
                rows.append(_row("Figure 8: advantage early in the stream", dataset, task,
                                 f"offline {_loss_name(task)} over the first {fraction:.0%} of the stage, relative",
                                 method, comparator, _advantage(frame, method, comparator)))
    return rows


def preliminary_claims(study: pd.DataFrame, dataset: str, task: str) -> list[dict]:
    """Figure 1, the crossover: the smallest dimension beats the largest at the smallest x, and loses to it at
    the largest x (test loss of models trained to convergence)."""
    small, large = f"fixed-{study['dimension'].min()}", f"fixed-{study['dimension'].max()}"
    sizes = sorted(study["train_size"].unique())
    name, metric = "Figure 1: crossover", f"test {_loss_name(task)}, relative"
    first, last = (study[study["train_size"] == x] for x in (sizes[0], sizes[-1]))
    return [_row(name, dataset, task, metric, small, large, _advantage(first, small, large), bucket=f"x={sizes[0]}"),
            _row(name, dataset, task, metric, large, small, _advantage(last, large, small), bucket=f"x={sizes[-1]}")]


def stream_capacity_claims(metrics: pd.DataFrame, dataset: str, side: str = "user") -> list[dict]:
    """Figure 1's streaming view: in the online stage, the smallest fixed dimension beats the largest for the
    least popular bucket, and loses to it for the most popular."""
    rows = []
    for task, frame in metrics.groupby("task", sort=False):
        dims = sorted(int(m.split("-")[1]) for m in frame["method"].unique() if m.startswith("fixed-"))
        if len(dims) < 2:
            continue
        small, large = f"fixed-{dims[0]}", f"fixed-{dims[-1]}"
        buckets = [b for b in frame["bucket"].cat.categories if (frame["bucket"] == b).any()]
        metric = f"online {_loss_name(task)} by {side} popularity, relative"
        for bucket, (a, b) in ((buckets[0], (small, large)), (buckets[-1], (large, small))):
            part = frame[frame["bucket"] == bucket]
            rows.append(_row("Figure 1 (stream): crossover", dataset, task, metric, a, b, _advantage(part, a, b),
                             bucket=str(bucket)))
    return rows


def claims_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[*COLUMNS, "std"])


# -- running it -------------------------------------------------------------------------------------
@dataclass
class ReportSettings:
    """What :func:`report` runs: the base config (dataset, tuned values, run settings) and the grid."""

    base: Config
    results_dir: Path
    tasks: tuple = ("regression", "classification")
    seeds: tuple = (0, 1, 2, 3, 4)
    methods: tuple = TABLE2
    side: str = "user"
    min_samples: int = 200
    early_fraction: float = 0.2
    figure1: Figure1Settings | None = FIGURE1  # Figure 1's capacity study (slowest on a large stream); None: skip
    frontier: bool = False  # the memory frontier (hard selection), on the regression task
    frontier_points: tuple = ()  # its settings (frontier.Point); empty: frontier.points()
    workers: int = 1  # runs at a time: the local dask cluster's workers, or without a scheduler the frontier's processes
    scheduler: str | None = None  # where the runs go (sweep.execute): None (this process), local or tcp://HOST:PORT
    gpus_per_run: float = 0
    command: str = ""

    def figure1_settings(self) -> dict:
        return self.figure1.to_dict()

    @classmethod
    def demo(cls, results_dir, progress: bool = True, command: str = "") -> "ReportSettings":
        """``python -m autoemb_core demo``: the report at quick settings on the built-in synthetic stream, its
        first 30,000 interactions, both tasks, 3 seeds and Figure 1's quick grid."""
        base = resolve({"dataset": "synthetic", "max_interactions": 30_000, **({} if progress else {"progress": False})})
        return cls(base, Path(results_dir), seeds=(0, 1, 2), figure1=Figure1Settings.quick(), command=command)


def figure1_task(tasks) -> str:
    """Figure 1 is a regression figure in the paper (MSE and accuracy): regression where it is asked for."""
    return "regression" if "regression" in tasks else tasks[0]


def report(settings: ReportSettings, data: Interactions | None = None) -> pd.DataFrame:
    """Run (or reuse from ``results_dir/runs``) every run the claims need, compute the claims, and write
    ``claims.csv``, ``REPORT.md``, the figures and ``report.json`` (settings and versions) into
    ``results_dir``. Returns the claims."""
    s, began = settings, datetime.datetime.now(datetime.timezone.utc)
    check_settings(s.tasks, s.seeds)
    folder = Path(s.results_dir)
    base = s.base
    if data is None:
        data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    dataset, runs_dir = data.name, folder / "runs"
    fig1_task = figure1_task(list(s.tasks))
    results, rows, figures = {}, [], {}
    from . import plots  # matplotlib only when a report is drawn

    for task in s.tasks:
        methods = list(dict.fromkeys([*s.methods, *(FIXED if task == fig1_task and s.figure1 else ())]))
        cfg = dataclasses.replace(base, task=task)
        results[task] = dict(ex.iter_runs(cfg, methods, s.seeds, data, runs_dir, reuse=True, scheduler=s.scheduler,
                                          workers=s.workers, gpus_per_run=s.gpus_per_run))
    summaries = pd.DataFrame([{k: r.summary[k] for k in ("dataset", "task", "method", "seed", "online_loss",
                                                         "online_accuracy", "seconds")}
                              for by_task in results.values() for r in by_task.values()])
    ex.save_table(summaries, folder, "runs")
    rows += table2_claims(summaries[~summaries["method"].isin(FIXED)])
    for task, by_task in results.items():
        paper_runs = {k: r for k, r in by_task.items() if k[0] not in FIXED}
        edges = ex.sample_edges(by_task, s.side, s.min_samples)
        metrics = ex.popularity_metrics(paper_runs, s.side, edges)
        by_bucket = popularity_claims(metrics, dataset, s.side)
        rows += by_bucket
        figures[f"figure6_{task}"] = plots.popularity_advantage(claims_frame(by_bucket))
        records = ex.weight_records({k: r for k, r in paper_runs.items() if k[0] == "autoemb"})
        if not records.empty:
            rows += weight_claims(weight_slopes(records), dataset, task)
            selection = ex.select_weights(records, method="autoemb", side=s.side, stage="online", edges=edges)
            figures[f"figure7_{task}"] = plots.weights_by_popularity(selection, "autoemb", s.side)
        rows += early_claims(early_losses(paper_runs, s.early_fraction), dataset, s.early_fraction)
        four = {k: r for k, r in paper_runs.items() if k[0] in PAPER}
        if four:
            figures[f"figure8_{task}"] = plots.learning_curves(ex.learning_curves(four, "offline"))
        fixed = {k: r for k, r in by_task.items() if k[0] in FIXED}
        if fixed:
            fixed_metrics = ex.popularity_metrics(fixed, s.side, edges)
            rows += stream_capacity_claims(fixed_metrics, dataset, s.side)
            figures["figure1_stream"] = plots.popularity(fixed_metrics, s.side, "Figure 1, streaming view: fixed "
                                                         "dimensions online, by popularity")
    if s.figure1:
        study = preliminary(s, dataclasses.replace(base, task=fig1_task), data, folder)
        rows += preliminary_claims(study, dataset, fig1_task)
        figures["figure1_capacity"] = plots.preliminary(study, fig1_task)
    memory = None
    if s.frontier:
        memory = memory_frontier(dataclasses.replace(base, task="regression"), data, s.frontier_points, s.seeds,
                                 folder, s.workers, s.scheduler)
        rows += fr.frontier_claims(memory["runs"])
        figures["memory_frontier"] = plots.frontier(memory["table"], "regression", f"Memory frontier on {dataset}")
    claims = claims_frame(rows)
    truth = generator_capacity(dataset, s.figure1.train_sizes) if s.figure1 else None
    figure_dir = folder / "figures"
    for name, fig in figures.items():
        plots.save(fig, figure_dir, name, close=True)
    ex.save_frame(claims[COLUMNS], folder, "claims")
    seconds = (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds()
    meta = {"command": s.command, "dataset": dataset, "interactions": len(data), "tasks": list(s.tasks),
            "seeds": list(s.seeds), "methods": list(s.methods), "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": seconds, "run_seconds": float(summaries["seconds"].sum()), "machine": machine(), "versions": versions(), "config": base.to_dict(),
            "figure1": s.figure1_settings() if s.figure1 else None}
    write_json_atomic(folder / "report.json", meta)
    with atomic_write(folder / "REPORT.md", "w") as f:
        f.write(render(claims, summaries, meta, sorted(figures), truth, None if memory is None else memory["table"]))
    return claims


def memory_frontier(base: Config, data: Interactions, points, seeds, folder: Path, workers: int = 1,
                    scheduler: str | None = None) -> dict:
    """:func:`frontier.frontier` with its runs under ``folder/runs`` (reused), and ``frontier_runs.csv`` and
    ``frontier.csv`` (the table) written into ``folder``."""
    runs = fr.frontier(base, data, list(points) or None, seeds, Path(folder) / "runs", workers, scheduler=scheduler)
    table = fr.frontier_table(runs)
    ex.save_frame(runs, folder, "frontier_runs")
    ex.save_frame(table, folder, "frontier")
    return {"runs": runs, "table": table}


def frontier_view(table: pd.DataFrame, timings: bool = True) -> pd.DataFrame:
    """The frontier table for a reader: loss with its interval, bytes and their ratios, the change against
    FSE-146 and whether the point is Pareto-optimal; with ``timings``, peak RSS and seconds (which vary from run
    to run) too."""
    def change(r):
        if not np.isfinite(r["vs_fse146_loss"]):
            return ""
        half = r["vs_fse146_loss_±95%"]
        return f"{100 * r['vs_fse146_loss']:+.2f}%" + (f" ± {100 * half:.2f}" if np.isfinite(half) else "")
    out = pd.DataFrame({
        "point": table["point"],
        "online loss": [f"{v:.4f}" + (f" ± {h:.4f}" if np.isfinite(h) else "") for v, h in zip(table["online_loss"], table["±95%"])],
        "embedding MB": (table["embedding_bytes"] / 1e6).round(3),
        "× FSE-146": table["vs_fse146_bytes"].round(3), "× FSE-128": table["vs_fse128_bytes"].round(3),
        "loss vs FSE-146 (95% CI)": [change(r) for _, r in table.iterrows()],
        "parameters": table["embedding_parameters"].round().astype("Int64"),
        "Pareto": table["pareto"].map({True: "yes", False: ""})})
    if timings:
        out["peak RSS MB"] = table["peak_rss_mb"].round(0)
        out["seconds"] = table["seconds"].round(0)
    return out


def frontier_markdown(table: pd.DataFrame) -> str:
    return frontier_view(table).to_markdown(index=False)


def frontier_report(base: Config, data: Interactions, points, seeds, folder, workers: int = 1,
                    command: str = "", scheduler: str | None = None) -> pd.DataFrame:
    """The memory frontier on its own: its runs, ``frontier.csv``, ``frontier_claims.csv``, the figure and
    ``FRONTIER.md`` in ``folder``; returns the claims."""
    began = datetime.datetime.now(datetime.timezone.utc)
    folder = Path(folder)
    memory = memory_frontier(base, data, points, seeds, folder, workers, scheduler)
    claims = claims_frame(fr.frontier_claims(memory["runs"]))
    ex.save_frame(claims[COLUMNS] if len(claims) else pd.DataFrame(columns=COLUMNS), folder, "frontier_claims")
    from . import plots
    plots.save(plots.frontier(memory["table"], base.task, f"Memory frontier on {data.name}"), folder / "figures",
               "memory_frontier", close=True)
    seconds = (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds()
    run_seconds = float(pd.to_numeric(memory["runs"]["seconds"]).sum())
    meta = {"command": command, "dataset": data.name, "interactions": len(data), "task": base.task,
            "seeds": list(seeds), "seconds": seconds, "run_seconds": run_seconds, "machine": machine(), "versions": versions(),
            "config": base.to_dict()}
    write_json_atomic(folder / "frontier.json", meta)
    lines = [f"# Memory frontier on {data.name}", "", f"Made by `{command}`" if command else "", "",
             f"{len(data):,} interactions; task {base.task}; seeds {list(seeds)}; finished after {seconds / 60:.1f} min "
             f"on {machine()} (the runs took {run_seconds / 60:.0f} min, summed over runs, some possibly in earlier "
             f"invocations whose runs this one reused); torch {meta['versions']['torch']}, commit "
             f"{meta['versions']['git_commit'] or 'unknown'}.",
             "", FRONTIER_INTRO, "", frontier_markdown(memory["table"]), "", "## Claims", ""]
    lines += [verdict_table(claims).to_markdown(index=False) if len(claims) else "No claim: FSE-146 or hard AutoEmb "
              "is missing from the points.", "", "![frontier](figures/memory_frontier.png)", ""]
    with atomic_write(folder / "FRONTIER.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    return claims


FRONTIER_INTRO = ("Embedding bytes are counted from the tensors a run holds at its end: the embedding tables at "
                  "their allocated capacity with their optimizer state, mixed storage's id -> (space, slot) map and "
                  "free lists, and the transforms with their optimizer state and BatchNorm buffers (the controllers "
                  "and per-id context are apart, as selection bytes). Parameters are the literature's count: the "
                  "stored dimensions of every id plus the transforms. Loss intervals are 95% t intervals over "
                  "seeds; the change against FSE-146 is paired per seed. A point is Pareto-optimal when no other "
                  "point has no more bytes and a lower mean loss.")


def generator_capacity(dataset: str, train_sizes) -> pd.DataFrame | None:
    """For a synthetic preset, the generator's own Figure 1 (:func:`synthetic.capacity_study`: per-user ridge
    on the true item factors) at the report's x and at larger ones, beside the trained models'; else None."""
    from . import synthetic
    if dataset not in synthetic.PRESETS:
        return None
    sizes = sorted({*train_sizes, 256, 512, 1024})
    return synthetic.capacity_study(dataset, train_sizes=sizes).round(4)


def preliminary(s: ReportSettings, base: Config, data: Interactions, folder: Path) -> pd.DataFrame:
    """Figure 1's capacity study, reusing ``figure1_runs.csv`` when it was made with the same settings (the
    run config compared as :meth:`Config.differences` compares it)."""
    key = {"interactions": len(data), "seeds": list(s.seeds), **s.figure1_settings()}
    saved, settings_path = folder / "figure1_runs.csv", folder / "figure1_settings.json"
    if saved.is_file() and settings_path.is_file():
        previous = json.loads(settings_path.read_text())
        if {k: previous.get(k) for k in key} == key and not base.resolved().differences(previous.get("config", {})):
            return pd.read_csv(saved)
    f = s.figure1
    study = ex.preliminary_study(base, data, FIXED, f.train_sizes, f.n_test, s.seeds, f.n_validation, f.max_epochs,
                                 f.patience, f.l2_grid)
    ex.save_frame(study, folder, "figure1_runs")
    write_json_atomic(settings_path, {**key, "config": base.resolved().to_dict()})
    return study


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}"


# -- REPORT.md ---------------------------------------------------------------------------------------
def _interval(row) -> str:
    fmt = (lambda v: f"{100 * v:+.2f}%") if "relative" in row["metric"] else (lambda v: f"{v:+.3g}")
    if not np.isfinite(row["ci_low"]):
        return fmt(row["effect"])
    return f"{fmt(row['effect'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def _percent_or_value(row, column) -> str:
    v = row[column]
    if not np.isfinite(v):
        return ""
    return f"{100 * v:.2f}%" if "relative" in row["metric"] else f"{v:.3g}"


def verdict_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims for a reader: what is compared, our effect with its interval, the detectable effect, the
    paper's effect and the verdict (and, for an inconclusive row, the seeds that would settle it)."""
    out = []
    for _, r in claims.iterrows():
        settle = ""
        if r["verdict"] == INCONCLUSIVE and r["n_seeds"] < 2:
            settle = "2 or more (one seed has no interval)"
        elif r["verdict"] == INCONCLUSIVE:
            n = seeds_needed(r["effect"], r["std"])
            settle = str(n) if n else "> 10,000"
        out.append({"claim": r["claim"], "task": r["task"],
                    "comparison": f"{r['method']} vs {r['comparator']}" if r["comparator"] else f"{r['method']}: {r['metric']}",
                    "bucket": r["bucket"], "ours (95% CI)": _interval(r), "mde": _percent_or_value(r, "mde"),
                    "paper": _percent_or_value(r, "paper_effect"), "verdict": r["verdict"], "seeds to settle": settle})
    return pd.DataFrame(out)


def summary_lines(claims: pd.DataFrame) -> list[str]:
    """One line per claim (grouped over tasks and buckets): how many of its rows reproduced."""
    lines = []
    for name, g in claims.groupby("claim", sort=False):
        counts = g["verdict"].value_counts()
        parts = ", ".join(f"{counts[v]} {v}" for v in (REPRODUCED, "not reproduced", INCONCLUSIVE) if v in counts)
        lines.append(f"- **{name}**: {parts} (of {len(g)} rows)")
    return lines


def render(claims: pd.DataFrame, summaries: pd.DataFrame, meta: dict, figures: list[str],
           truth: pd.DataFrame | None = None, frontier: pd.DataFrame | None = None) -> str:
    dataset = meta["dataset"]
    layout = ex.paper_table(ex.overall_table(summaries))
    lines = [f"# Reproduction report: AutoEmb (Zhao et al., 2020) on {dataset}", "",
             f"Made by `{meta['command']}`" if meta["command"] else "", "",
             f"{meta['interactions']:,} interactions; tasks {', '.join(meta['tasks'])}; seeds {meta['seeds']}; "
             f"finished {meta['finished']} after {meta['seconds'] / 60:.1f} min on {meta['machine']} (the streamed "
             f"runs took {meta['run_seconds'] / 60:.0f} min, summed over runs, some possibly in earlier invocations "
             f"whose runs this one reused); "
             f"torch {meta['versions']['torch']}, commit {meta['versions']['git_commit'] or 'unknown'}. "
             "Settings and versions: `report.json`; every claim: `claims.csv`.", "",
             "## How to read it", "",
             "Each row is one claim of the paper, measured as paired per-seed differences on the same stream and "
             "seeds. Effects are signed so that **a positive value favours the paper**; a relative effect is "
             "(comparator's loss - method's loss) / comparator's loss. `mde` is the smallest effect these seeds detect "
             "with 80% power (two-sided t test at 5%). `paper` is the paper's own effect on MovieLens-20m (Table 2), "
             "where it gives one. Verdicts: **reproduced** (the 95% interval excludes 0 in the paper's direction and "
             "does not lie wholly below the paper's effect), **not reproduced** (it excludes 0 against the paper, or "
             "lies wholly below the paper's effect), **inconclusive** (otherwise; `seeds to settle` is how many seeds "
             "would detect the observed effect with 80% power).", "",
             "## Verdicts", "", *summary_lines(claims), "",
             verdict_table(claims).to_markdown(index=False), "",
             "## Table 2 beside the paper", "",
             layout.reset_index().to_markdown(index=False), ""]
    if all(v == INCONCLUSIVE for v in claims["verdict"]):
        need = [seeds_needed(e, sd) for e, sd in zip(claims["effect"], claims["std"]) if np.isfinite(sd)]
        need = [n for n in need if n]
        lines += [f"Every row is inconclusive: {min(need) if need else 'no finite number of'} seeds would settle the "
                  f"easiest one, {max(need) if need else '-'} the hardest with a nonzero effect.", ""]
    if truth is not None:
        lines += ["## Figure 1 in the generator's truth", "",
                  "`synthetic.capacity_study`: per-user ridge fits on the first d true item factors, for the most "
                  "active users, with x ratings drawn from the generator's own model (test MSE on the 1..5 scale). "
                  "It shows where the data's own crossover lies, for comparison with the trained models above.", "",
                  truth.reset_index().to_markdown(index=False), ""]
    if frontier is not None:
        lines += ["## Memory frontier (hard selection, regression)", "", FRONTIER_INTRO, "",
                  frontier_markdown(frontier), ""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}](figures/{name}.png)" for name in figures] + [""]
    lines += ["## Versions", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in meta["versions"].items()]
    return "\n".join(lines) + "\n"


def check_settings(tasks, seeds) -> None:
    if not tasks:
        raise DataError("report needs at least one task", hint="--tasks regression classification")
    if len(set(seeds)) < 2:
        raise DataError(f"report needs at least 2 seeds for an interval, got {list(seeds)}",
                        hint="--seeds 0 1 2 (3 or more for a verdict worth reading)")
