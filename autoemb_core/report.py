"""The reproduction report: every claim of the paper as a paired per-seed effect with its interval, the
smallest effect its seeds detect, the paper's own effect and a verdict; written as ``claims.csv`` and
``REPORT.md`` beside the figures.

Each figure's table, claims and drawing come from :mod:`autoemb_core.figures`, the functions the notebooks
call; :func:`report` runs what is missing and writes everything.
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
from . import figures as fg
from . import frontier as fr
from . import tuning
from .atomic import atomic_write, write_json_atomic
from .config import DEMO_INTERACTIONS, DEMO_SEEDS, DEMO_TASKS, FIGURE1, Config, Figure1Settings, read_params, resolve
from .methods import FIXED, PAPER, TABLE2
from .regimes import REGIMES
from .regimes import check as check_regimes
from .regimes import describe as describe_regime
from .regimes import line as regime_line
from .data import load_dataset
from .figures import COLUMNS
from .interactions import DataError, Interactions
from .stats import INCONCLUSIVE, REPRODUCED, VERDICTS, seeds_needed, t_quantile, verdict
from .train import versions


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
    workers: int = 1  # runs at a time: the local dask cluster's workers, or without a scheduler the frontier's and
    # Figure 1's processes
    scheduler: str | None = None  # where the runs go (sweep.execute): None (this process), local or tcp://HOST:PORT
    gpus_per_run: float = 0
    tune_trials: int = tuning.TRIALS  # a method with no tuned values for a task is tuned first, with this many
    # trials on the stream's offline stage (autoemb_core.tuning); 0: not tuned, the report says "untuned"
    command: str = ""

    def figure1_settings(self) -> dict:
        return self.figure1.to_dict()

    @classmethod
    def demo(cls, results_dir, progress: bool = True, command: str = "", threads: int | None = None,
             max_interactions: int = DEMO_INTERACTIONS, seeds: tuple = DEMO_SEEDS,
             tasks: tuple = DEMO_TASKS) -> "ReportSettings":
        """``python -m autoemb_core demo``: the report at quick settings on the built-in synthetic stream, its
        first 30,000 interactions, regression, 3 seeds and Figure 1's quick grid."""
        base = resolve({"dataset": "synthetic", "max_interactions": max_interactions,
                        **({} if progress else {"progress": False}), **({} if threads is None else {"threads": threads})})
        return cls(base, Path(results_dir), tasks=tuple(tasks), seeds=tuple(seeds), figure1=Figure1Settings.quick(),
                   command=command)


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
    tuned_here = [(t, m) for t in s.tasks for m in s.methods if tuning.needs_tuning(base, m, t)]
    base = tuning.ensure_tuned(base, data, s.methods, s.tasks, s.tune_trials, folder, workers=s.workers)
    results, parts, drawn = {}, [], {}
    for task in s.tasks:
        methods = list(dict.fromkeys([*s.methods, *(FIXED if task == fig1_task and s.figure1 else ())]))
        cfg = dataclasses.replace(base, task=task)
        results[task] = dict(ex.iter_runs(cfg, methods, s.seeds, data, runs_dir, reuse=True, scheduler=s.scheduler,
                                          workers=s.workers, gpus_per_run=s.gpus_per_run))
    summaries = pd.DataFrame([{k: r.summary[k] for k in ("dataset", "task", "method", "seed", "online_loss",
                                                         "online_accuracy", "seconds")}
                              for by_task in results.values() for r in by_task.values()])
    ex.save_table(summaries, folder, "runs")
    overall = fg.table2(summaries)  # the fixed dimensions are in no claim of Table 2, only in its table
    parts.append(overall.claims)
    for task, by_task in results.items():
        paper_runs = {k: r for k, r in by_task.items() if k[0] not in FIXED}
        edges = {side: ex.sample_edges(by_task, side, s.min_samples) for side in fg.SIDES}
        _add(parts, drawn, f"figure6_{task}", fg.figure6(paper_runs, dataset, s.side, edges[s.side]))
        records = ex.weight_records({k: r for k, r in paper_runs.items() if k[0] == "autoemb"})
        if not records.empty:
            _add(parts, drawn, f"figure7_{task}", fg.figure7(records, dataset, task, edges, s.side))
        four = {k: r for k, r in paper_runs.items() if k[0] in PAPER}
        if four:  # the early claims compare AutoEmb with FSE and SAM, all among the four
            _add(parts, drawn, f"figure8_{task}", fg.figure8(four, dataset, s.early_fraction))
        fixed = {k: r for k, r in by_task.items() if k[0] in FIXED}
        if fixed:
            _add(parts, drawn, "figure1_stream", fg.figure1_stream(fixed, dataset, s.side, edges[s.side]))
    if s.figure1:
        for protocol in s.figure1.protocols:
            study = preliminary(s, dataclasses.replace(base, task=fig1_task), data, folder, protocol)
            _add(parts, drawn, "figure1_capacity" + ("_paper_protocol" if protocol == "paper" else ""),
                 fg.figure1(study, dataset, fig1_task))
    memory = None
    if s.frontier:
        _, memory = memory_frontier(dataclasses.replace(base, task="regression"), data, s.frontier_points, s.seeds,
                                    folder, s.workers, s.scheduler)
        _add(parts, drawn, "memory_frontier", memory)
    claims = fg.concat_claims(parts)
    truth = generator_capacity(dataset, s.figure1.train_sizes) if s.figure1 else None
    from . import plots  # matplotlib only when a report is drawn
    for name, fig in drawn.items():
        plots.save(fig, folder / "figures", name, close=True)
    ex.save_frame(claims[COLUMNS], folder, "claims")
    seconds = (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds()
    meta = {"command": s.command, "dataset": dataset, "interactions": len(data), "tasks": list(s.tasks),
            "seeds": list(s.seeds), "methods": list(s.methods), "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "seconds": seconds, "run_seconds": float(summaries["seconds"].sum()), "machine": machine(), "versions": versions(), "config": base.to_dict(),
            "figure1": s.figure1_settings() if s.figure1 else None,
            "tuning": tuning.describe(tuned_here, s.tune_trials, folder, data, base),
            "regime": describe_regime(base.regime) if base.regime else None}
    write_json_atomic(folder / "report.json", meta)
    with atomic_write(folder / "REPORT.md", "w") as f:
        f.write(render(claims, overall.table, meta, sorted(drawn), truth, None if memory is None else memory.table))
    return claims


def _judged_again(claims: pd.DataFrame) -> pd.DataFrame:
    """Saved claims (a ``claims.csv`` as read back) with today's paper effects and verdicts, and each row's seed
    sd recovered from its interval's half-width, t_0.975 sd / sqrt(n)."""
    claims = claims.copy()
    claims[["bucket", "comparator"]] = claims[["bucket", "comparator"]].fillna("").astype(str)
    table2_rows = claims["claim"].isin(fg.TABLE2_CLAIMS)
    claims.loc[table2_rows, "paper_effect"] = [
        np.nan if (e := fg.paper_effect(r.task, r.method, r.comparator, r.dataset)) is None else e
        for r in claims[table2_rows].itertuples()]
    claims["verdict"] = [verdict(lo, hi, None if np.isnan(pe) else pe)
                         for lo, hi, pe in zip(claims["ci_low"], claims["ci_high"], claims["paper_effect"])]
    n = claims["n_seeds"].clip(lower=2)
    claims["std"] = (claims["ci_high"] - claims["ci_low"]) / 2 * np.sqrt(n) / [t_quantile(0.975, k - 1) for k in n]
    return claims


def rejudge(folder) -> pd.DataFrame:
    """Judge a finished report's claims again under today's verdicts and paper effects, and write its
    ``claims.csv`` and ``REPORT.md`` anew (and ``frontier_claims.csv`` and ``FRONTIER.md``'s claims, where the
    folder has a frontier), from what it saved: no run is repeated, so the effects and intervals stay those of its
    runs, with their settings of the time. For reports whose runs are not kept (the committed ones keep only
    their summaries)."""
    folder = Path(folder)
    for name in ("claims.csv", "runs.csv", "report.json"):
        if not (folder / name).is_file():
            raise DataError(f"{folder / name} is missing: --rejudge reads a finished report's files",
                            hint="run the report first (without --rejudge)")
    read = lambda name: pd.read_csv(folder / name, keep_default_na=False, na_values=[""])
    claims = _judged_again(read("claims.csv"))
    meta = json.loads((folder / "report.json").read_text())
    meta.setdefault("tuning", "Each method ran with the tuned values of `params/<dataset>.yaml` at the time of its "
                              "runs (`report.json`'s config).")
    command = f"python -m autoemb_core report --dataset {meta['dataset']} --rejudge --results-dir {folder.as_posix()}"
    meta["rejudged"] = {"at": datetime.datetime.now().isoformat(timespec="seconds"), "command": command}
    figure1 = meta.get("figure1")
    truth = generator_capacity(meta["dataset"], figure1["train_sizes"]) if figure1 else None
    figures = sorted(p.stem for p in (folder / "figures").glob("*.png"))
    ex.save_frame(claims[COLUMNS], folder, "claims")
    write_json_atomic(folder / "report.json", meta)
    with atomic_write(folder / "REPORT.md", "w") as f:
        f.write(render(claims, fg.table2(read("runs.csv")).table, meta, figures, truth))
    if (folder / "frontier_claims.csv").is_file() and (folder / "FRONTIER.md").is_file():
        frontier = _judged_again(read("frontier_claims.csv"))
        ex.save_frame(frontier[COLUMNS], folder, "frontier_claims")
        head = (folder / "FRONTIER.md").read_text().split("## Claims")[0]
        with atomic_write(folder / "FRONTIER.md", "w") as f:
            f.write(f"{head}## Claims\n\nJudged again on {meta['rejudged']['at'][:10]} (no run repeated): "
                    f"`{command}`.\n\n{verdict_table(frontier).to_markdown(index=False)}\n\n"
                    "![frontier](figures/memory_frontier.png)\n")
    return claims


def regimes_report(settings: ReportSettings, regimes, data: Interactions | None = None) -> pd.DataFrame:
    """:func:`report` once per regime (:mod:`autoemb_core.regimes`), each in ``results_dir/<regime>/`` (Figure 1's
    capacity study and the frontier in the last regime given only: the most competent in the usual order), then in
    ``results_dir``: ``claims.csv`` (every
    regime's claims, with a ``regime`` column), ``runs.csv`` and ``REPORT.md``, which sets each claim's verdict in
    every regime side by side, says where the paper's orderings appear, and sets our seed spread beside the paper's
    error bars. Returns the claims."""
    regimes = check_regimes(regimes)
    began, folder = datetime.datetime.now(datetime.timezone.utc), Path(settings.results_dir)
    if data is None:
        base = settings.base
        data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    claims, runs, base = [], [], settings.base
    for n, name in enumerate(regimes):
        if n:
            share_runs(folder / regimes[n - 1] / "runs", folder / name / "runs")
            base = carry_tuned(base, folder / regimes[n - 1])
        last = n == len(regimes) - 1
        one = dataclasses.replace(settings, base=dataclasses.replace(base, regime=name),
                                  results_dir=folder / name, figure1=settings.figure1 if last else None,
                                  frontier=settings.frontier and last)
        claims.append(report(one, data).assign(regime=name))
        runs.append(pd.read_csv(folder / name / "runs.csv").assign(regime=name))
    claims, runs = pd.concat(claims, ignore_index=True), pd.concat(runs, ignore_index=True)
    ex.save_frame(claims[["regime", *COLUMNS]], folder, "claims")
    ex.save_table(runs, folder, "runs")
    seconds = (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds()
    meta = {"command": settings.command, "dataset": data.name, "interactions": len(data), "regimes": regimes,
            "regime_settings": {r: describe_regime(r) for r in regimes},
            "seeds": list(settings.seeds), "tasks": list(settings.tasks), "seconds": seconds, "machine": machine(),
            "run_seconds": float(runs["seconds"].sum()),
            "versions": versions(), "finished": datetime.datetime.now().isoformat(timespec="seconds")}
    write_json_atomic(folder / "report.json", meta)
    with atomic_write(folder / "REPORT.md", "w") as f:
        f.write(render_regimes(claims, runs, meta, len(data) - int(round(len(data) * settings.base.offline_fraction))))
    return claims


def carry_tuned(base: Config, previous: Path) -> Config:
    """``base`` with the values a previous regime's tuning chose (``previous/tuned.yaml``) for the methods it has
    none for, so that a later regime neither tunes them again nor starts its architecture studies without them
    (:func:`autoemb_core.tuning.architecture_starts`). A regime whose tuning chose the architecture passes nothing:
    its values are its own."""
    path = previous / "tuned.yaml"
    if REGIMES[previous.name].architecture or not path.is_file():
        return base
    chosen = read_params(path).get("tuned", {})
    return dataclasses.replace(base, tuned={task: {**chosen.get(task, {}), **base.tuned.get(task, {})}
                                            for task in {**chosen, **base.tuned}})


def share_runs(source: Path, target: Path) -> None:
    """Copy into ``target`` the finished runs of ``source`` that no regime changes (saved with no regime: the floor,
    and FSE and mf under ``competent``), so that the next regime reuses them instead of running them again; a copy
    is reused only where its settings match, as any saved run."""
    import shutil
    for summary in sorted(Path(source).glob("*/summary.json")):
        if (target / summary.parent.name).exists():
            continue
        try:
            config = json.loads(summary.read_text()).get("config", {})
        except (OSError, ValueError):
            continue
        if config.get("regime") is None:
            shutil.copytree(summary.parent, target / summary.parent.name)


KEYS = ["claim", "task", "method", "comparator", "bucket"]  # one claim row, the same in every regime


def regime_table(claims: pd.DataFrame, regimes) -> pd.DataFrame:
    """One row per claim row, one column per regime: our effect with its interval, and the verdict."""
    cell = claims.assign(cell=[f"{_interval(r)} {r['verdict']}" for _, r in claims.iterrows()],
                         comparator=claims["comparator"].fillna(""), bucket=claims["bucket"].fillna(""))
    table = cell.pivot_table(index=KEYS, columns="regime", values="cell", aggfunc="first", sort=False)
    return table.reindex(columns=list(regimes)).fillna("").reset_index()


def where_it_holds(claims: pd.DataFrame, regimes) -> list[str]:
    """Per claim (over its tasks and buckets): under which regimes some of its rows are reproduced and under which
    none is, and which settings two such regimes set differently (each bundle over the package defaults)."""
    defaults = Config()

    def effective(r):
        return {k: list(v) if isinstance(v := REGIMES[r].settings.get(k, getattr(defaults, k)), tuple) else v
                for k in keys}

    keys = sorted({k for r in regimes for k in REGIMES[r].settings})
    lines = []
    for name, g in claims.groupby("claim", sort=False):
        judged = [r for r in regimes if r in set(g["regime"])]  # Figure 1 is judged in the last regime only
        rows = g.groupby("regime")["verdict"].size()
        hits = {r: int((g[g["regime"] == r]["verdict"] == REPRODUCED).sum()) for r in judged}
        tally = ", ".join(f"{r}: {hits[r]} of {rows[r]}" for r in judged)
        held = [r for r in judged if hits[r]]
        if len(judged) == 1:
            lines.append(f"- **{name}** (judged under {judged[0]} only): "
                         + (f"reproduced in {tally} rows." if held else f"no row is reproduced ({tally})."))
        elif len(held) == len(judged):
            lines.append(f"- **{name}**: some rows are reproduced under every regime ({tally} rows).")
        elif not held:
            lines.append(f"- **{name}**: no row is reproduced under any regime ({tally}): no setup measured here gives "
                         "the paper's result.")
        else:
            lost = [r for r in judged if r not in held]
            a, b = effective(held[0]), effective(lost[0])
            differ = [k for k in keys if a[k] != b[k]]
            tuning = "" if REGIMES[held[0]].tuned == REGIMES[lost[0]].tuned else "tuning"
            lines.append(f"- **{name}**: reproduced rows under {', '.join(held)}, none under {', '.join(lost)} ({tally}). "
                         f"{held[0]} and {lost[0]} differ in: {', '.join([*differ, *([tuning] if tuning else [])])}.")
    return lines


def spread_table(runs: pd.DataFrame, online_interactions: int) -> pd.DataFrame:
    """Per regime, task and paper method: the seed std of the online loss beside the paper's ± on the same
    dataset (else ML-20m's), and what would bring ours to it: seeds, were the paper's ± a standard error of the mean
    over seeds, or an online stage that many times longer, were the spread to fall as 1/sqrt(length)."""
    rows = []
    for (regime, task, method), g in runs[runs["method"].isin(PAPER)].groupby(["regime", "task", "method"], sort=False):
        dataset = g["dataset"].iloc[0]
        paper = ex.PAPER_TABLE2_LOSS_STD.get((dataset, task), ex.PAPER_TABLE2_LOSS_STD[("ml-20m", task)])[method]
        sd = float(g["online_loss"].std())
        ratio = (sd / paper) ** 2 if np.isfinite(sd) else float("nan")
        rows.append({"regime": regime, "task": task, "method": method, "seeds": len(g), "our std": round(sd, 5),
                     "paper ±": paper, "std / paper": round(sd / paper, 1),
                     "seeds for the paper's ±": int(np.ceil(ratio)) if np.isfinite(ratio) else "",
                     "online interactions for it": f"{ratio * online_interactions:,.0f}" if np.isfinite(ratio) else ""})
    return pd.DataFrame(rows)


def render_regimes(claims: pd.DataFrame, runs: pd.DataFrame, meta: dict, online_interactions: int) -> str:
    """REPORT.md of :func:`regimes_report`."""
    regimes = meta["regimes"]
    paper_from = paper_source(meta["dataset"])
    lines = [f"# Reproduction report under {len(regimes)} regimes: AutoEmb (Zhao et al., 2020) on {meta['dataset']}", "",
             f"Made by `{meta['command']}`" if meta["command"] else "", "",
             *([f"Judged again on {meta['rejudged']['at'][:10]} under the verdicts of that day, from the saved claims "
                f"and runs (no run repeated): `{meta['rejudged']['command']}`.", ""] if meta.get("rejudged") else []),
             provenance(meta, f"regimes {', '.join(regimes)}; ") + "Each regime's full report (its Table 2, figures "
             "and tuning) is in its folder; every claim of every regime is in `claims.csv`.", "", "## The regimes", ""]
    tallies = []
    for r in regimes:
        counts = claims[claims["regime"] == r]["verdict"].value_counts()
        tallies.append(f"under {r}, {', '.join(f'{counts[v]} {v}' for v in VERDICTS if v in counts)}")
    anywhere = [c for c, g in claims.groupby("claim", sort=False) if (g["verdict"] == REPRODUCED).any()]
    lines[lines.index("## The regimes")] = (
        f"**Bottom line.** Of {len(claims) // len(regimes)} claim rows per regime: {'; '.join(tallies)}. "
        + (f"Reproduced somewhere: {', '.join(anywhere)}; the section below says under which regimes."
           if anywhere else "No claim is reproduced under any regime.") + "\n\n## The regimes")
    lines += [f"- [{r}]({r}/REPORT.md): {regime_line(r)}" for r in regimes]
    lines += ["", "The floor (`biases`, `item-mean`, `mf`) runs as tuned in every regime: the same runs, bit for bit.",
              "", "## Why the paper saw what it saw", "", *where_it_holds(claims, regimes), "",
              "## Every claim in every regime", "",
              "Our effect with its 95% interval (positive favours the paper), then the verdict, as in each regime's "
              f"report; the paper's effect is taken {paper_from}.", "",
              regime_table(claims, regimes).to_markdown(index=False), "",
              "## Our seed spread beside the paper's error bars", "",
              "The paper reports its losses as mean ± (0.0001 to 0.0006). Below, the std of the online loss over our "
              "seeds; the seeds our mean would need for a standard error as small as the paper's ±, and the online "
              f"stage (ours holds {online_interactions:,} interactions) that would shrink our spread to it, were "
              "the spread to fall as 1/sqrt(length).", "",
              spread_table(runs, online_interactions).to_markdown(index=False), ""]
    return "\n".join(lines) + "\n"


def _add(parts: list, drawn: dict, name: str, figure: fg.StudyFigure) -> None:
    """``figure``'s claims to ``parts`` and its drawing to ``drawn`` as ``name``."""
    parts.append(figure.claims)
    drawn[name] = figure.figure


def memory_frontier(base: Config, data: Interactions, points, seeds, folder: Path, workers: int = 1,
                    scheduler: str | None = None) -> tuple[pd.DataFrame, fg.StudyFigure]:
    """:func:`frontier.frontier` with its runs under ``folder/runs`` (reused), and ``frontier_runs.csv`` and
    ``frontier.csv`` (the table) written into ``folder``: the runs and :func:`figures.frontier`."""
    runs = fr.frontier(base, data, list(points) or None, seeds, Path(folder) / "runs", workers, scheduler=scheduler)
    memory = fg.frontier(runs, base.task, data.name)
    ex.save_frame(runs, folder, "frontier_runs")
    ex.save_frame(memory.data, folder, "frontier")
    return runs, memory


def frontier_report(base: Config, data: Interactions, points, seeds, folder, workers: int = 1,
                    command: str = "", scheduler: str | None = None) -> pd.DataFrame:
    """The memory frontier on its own: its runs, ``frontier.csv``, ``frontier_claims.csv``, the figure and
    ``FRONTIER.md`` in ``folder``; returns the claims."""
    began = datetime.datetime.now(datetime.timezone.utc)
    folder = Path(folder)
    runs, memory = memory_frontier(base, data, points, seeds, folder, workers, scheduler)
    claims = memory.claims
    ex.save_frame(claims[COLUMNS] if len(claims) else pd.DataFrame(columns=COLUMNS), folder, "frontier_claims")
    from . import plots
    plots.save(memory.figure, folder / "figures", "memory_frontier", close=True)
    seconds = (datetime.datetime.now(datetime.timezone.utc) - began).total_seconds()
    run_seconds = float(pd.to_numeric(runs["seconds"]).sum())
    meta = {"command": command, "dataset": data.name, "interactions": len(data), "task": base.task,
            "seeds": list(seeds), "seconds": seconds, "run_seconds": run_seconds, "machine": machine(), "versions": versions(),
            "config": base.to_dict()}
    write_json_atomic(folder / "frontier.json", meta)
    lines = [f"# Memory frontier on {data.name}", "", f"Made by `{command}`" if command else "", "",
             f"{len(data):,} interactions; task {base.task}; seeds {list(seeds)}; finished after {seconds / 60:.1f} min "
             f"on {machine()} (the runs took {run_seconds / 60:.0f} min, summed over runs, some possibly in earlier "
             f"invocations whose runs this one reused); torch {meta['versions']['torch']}, commit "
             f"{meta['versions']['git_commit'] or 'unknown'}.",
             "", FRONTIER_INTRO, "", memory.table.to_markdown(index=False), "", "## Claims", ""]
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


def preliminary(s: ReportSettings, base: Config, data: Interactions, folder: Path,
                protocol: str = "capacity") -> pd.DataFrame:
    """Figure 1's capacity study under ``protocol``, reusing ``figure1_runs.csv`` (``figure1_runs_paper.csv``)
    when it was made with the same settings: the grid, and the fixed-d models' run config, compared as
    :meth:`Config.differences` compares it (so a regime that leaves them as tuned, competent, reuses a study
    made without one). Until the study ends, its finished models are kept in ``figure1_runs.partial.csv``: a
    killed report resumes it there."""
    key = {"interactions": len(data), "seeds": list(s.seeds), **s.figure1_settings(), "protocol": protocol}
    suffix = "_paper" if protocol == "paper" else ""
    name, settings_path = f"figure1_runs{suffix}", folder / f"figure1_settings{suffix}.json"
    partial, partial_settings = f"{name}.partial", folder / f"figure1_settings{suffix}.partial.json"
    model = dataclasses.replace(base, method=FIXED[0]).resolved()

    def same(settings: Path) -> bool:
        if not settings.is_file():
            return False
        previous = {"protocol": "capacity", **json.loads(settings.read_text())}  # saved before protocols
        return {k: previous.get(k) for k in key} == key and not model.differences(previous.get("config", {}))

    if (folder / f"{name}.csv").is_file() and same(settings_path):
        return pd.read_csv(folder / f"{name}.csv")
    done = pd.read_csv(folder / f"{partial}.csv") \
        if (folder / f"{partial}.csv").is_file() and same(partial_settings) else None
    write_json_atomic(partial_settings, {**key, "config": model.to_dict()})  # a killed study resumes from its rows
    f = s.figure1
    study = ex.preliminary_study(base, data, FIXED, f.train_sizes, f.n_test, s.seeds, f.n_validation, f.max_epochs,
                                 f.patience, f.l2_grid, protocol, workers=s.workers if s.scheduler is None else 1,
                                 done=done, checkpoint=lambda rows: ex.save_frame(rows, folder, partial))
    ex.save_frame(study, folder, name)
    write_json_atomic(settings_path, {**key, "config": model.to_dict()})
    (folder / f"{partial}.csv").unlink(missing_ok=True)
    partial_settings.unlink(missing_ok=True)
    return study


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()} {platform.release()}"


# -- REPORT.md ---------------------------------------------------------------------------------------
def paper_source(dataset: str) -> str:
    """Where a claim on ``dataset`` takes the paper's effect from, in words."""
    own = fg.paper_dataset(dataset)
    return f"from its Table 2 row for {own}" if own == dataset else \
        f"from its Table 2 row for {own} (the paper has no row for {dataset})"


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


def bottom_line(claims: pd.DataFrame, meta: dict) -> str:
    """The report's answer in a few sentences, generated from its claims: how the rows fall, which claims hold
    somewhere and which nowhere, and what the settings leave open (seeds, stream length, tuning)."""
    counts = claims["verdict"].value_counts()
    tally = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    held = [c for c, g in claims.groupby("claim", sort=False) if (g["verdict"] == REPRODUCED).any()]
    against = [c for c, g in claims.groupby("claim", sort=False) if g["verdict"].isin(VERDICTS[1:3]).all()]
    text = [f"**Bottom line.** Of {len(claims)} claim rows, {tally}."]
    text.append(f"Reproduced in at least one row: {', '.join(held)}." if held else "No claim is reproduced in any row.")
    if against:
        text.append(f"Contradicted or smaller than claimed in every row: {', '.join(against)}.")
    mde = claims.loc[claims["metric"].str.contains("relative"), "mde"].dropna()
    seeds = len(meta["seeds"])
    caveats = [f"{seeds} seeds" + (f" (median detectable effect {100 * mde.median():.2f}%)" if len(mde) else "")]
    caveats.append(f"{meta['interactions']:,} interactions" + (" (a quick prefix: the paper's streams hold 20-100M)"
                                                                 if meta["interactions"] < 1_000_000 else ""))
    untuned = "Untuned" in meta.get("tuning", "")
    caveats.append("some methods untuned (`--no-tune`)" if untuned else "every method tuned on the offline stage")
    decide = " Few seeds decide little: an inconclusive row says more seeds are needed, not that the claim fails." \
        if seeds < 5 or counts.get(INCONCLUSIVE, 0) > len(claims) / 2 else ""
    text.append(f"These verdicts rest on {', '.join(caveats)}.{decide}")
    return " ".join(text)


def summary_lines(claims: pd.DataFrame) -> list[str]:
    """One line per claim (grouped over tasks and buckets): how many of its rows reproduced."""
    lines = []
    for name, g in claims.groupby("claim", sort=False):
        counts = g["verdict"].value_counts()
        parts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
        lines.append(f"- **{name}**: {parts} (of {len(g)} rows)")
    return lines


def provenance(meta: dict, grid: str = "") -> str:
    """A report's header sentence: its stream, grid, time, machine and versions."""
    return (f"{meta['interactions']:,} interactions; tasks {', '.join(meta['tasks'])}; seeds {meta['seeds']}; {grid}"
            f"finished {meta['finished']} after {meta['seconds'] / 60:.1f} min on {meta['machine']} (the streamed "
            f"runs took {meta['run_seconds'] / 60:.0f} min, summed over runs, some possibly in earlier invocations "
            f"whose runs this one reused); torch {meta['versions']['torch']}, commit "
            f"{meta['versions']['git_commit'] or 'unknown'}. ")


def render(claims: pd.DataFrame, table2: pd.DataFrame, meta: dict, figures: list[str],
           truth: pd.DataFrame | None = None, frontier: pd.DataFrame | None = None) -> str:
    """REPORT.md: ``table2`` is :func:`figures.table2`'s table, ``frontier`` :func:`figures.frontier`'s."""
    dataset = meta["dataset"]
    lines = [f"# Reproduction report: AutoEmb (Zhao et al., 2020) on {dataset}", "",
             f"Made by `{meta['command']}`" if meta["command"] else "", "",
             *([f"Judged again on {meta['rejudged']['at'][:10]} under the verdicts of that day, from the saved claims "
                f"and runs (no run repeated): `{meta['rejudged']['command']}`.", ""] if meta.get("rejudged") else []),
             provenance(meta) + "Settings and versions: `report.json`; every claim: `claims.csv`.", "",
             bottom_line(claims, meta), "",
             meta["tuning"], "", *([regime_line(meta["regime"]["name"]), ""] if meta.get("regime") else []),
             "## How to read it", "",
             "Each row is one claim of the paper, measured as paired per-seed differences on the same stream and "
             "seeds. Effects are signed so that **a positive value favours the paper**; a relative effect is "
             "(comparator's loss - method's loss) / comparator's loss. `mde` is the smallest effect these seeds detect "
             f"with 80% power (two-sided t test at 5%). `paper` is the paper's own effect, {paper_source(dataset)}. "
             "Verdicts: **reproduced** (the 95% interval excludes 0 in the paper's direction and does not lie wholly "
             "below the paper's effect), **smaller than claimed** (it lies wholly below the paper's effect: the paper's "
             "size is ruled out, though it may include 0), **contradicted** (it excludes 0 against the paper), "
             "**inconclusive** (otherwise; `seeds to settle` is how many seeds would detect the observed effect with "
             "80% power).", "",
             "## Verdicts", "", *summary_lines(claims), "",
             verdict_table(claims).to_markdown(index=False), "",
             "## Table 2 beside the paper", "",
             table2.reset_index().to_markdown(index=False), ""]
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
                  frontier.to_markdown(index=False), ""]
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
