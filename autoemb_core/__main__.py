"""Command line: ``python -m autoemb_core {run,compare,sweep,report,frontier,demo,summary,download} ...``."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import shlex
import sys
from pathlib import Path

from .config import DEMO_INTERACTIONS, DEMO_REGIMES, DEMO_SEEDS, DEMO_TASKS, FIGURE1, FSE_WIDTHS, HARD_PENALTIES, RULE_THRESHOLDS, SETTINGS, TUNE_TRIALS, Config, resolve
from .data import dataset_names, load_dataset
from .interactions import DataError
from .methods import METHODS, TABLE2
from .regimes import check as check_regimes

# torch, pandas and the modules that use them are imported by the command that runs, so that --help and a bad
# argument answer at once

TASKS = ("regression", "classification")


def config_from_args(args) -> Config:
    """The Config of a command's runs (:func:`autoemb_core.config.resolve`): every flag that names a setting and
    was given is explicit, over ``--params`` and ``params/<dataset>.yaml``."""
    folder = () if args.command == "run" else ("results_dir",)  # the others' --results-dir is their own folder
    given = {k: v for k, v in vars(args).items() if k in SETTINGS and k not in folder and v is not None}
    if getattr(args, "no_progress", False):
        given["progress"] = False
    return resolve(given, getattr(args, "params", None))


def _grid(base: Config, methods, tasks) -> None:
    """Check every (task, method) of a grid before any of it runs: Config says what is wrong with a name."""
    for task in tasks:
        for method in methods:
            dataclasses.replace(base, task=task, method=method, sources={})  # named by the flag, not a file


def _summary(args) -> dict:
    cfg = config_from_args(args)
    data = load_dataset(cfg.dataset, cfg.data_dir, max_interactions=cfg.max_interactions)
    summary = data.summary()
    for key, value in summary.items():
        print(f"{key:>28}: {value}")
    return summary


def _download(args) -> None:
    from .download import download
    print(download(args.name, args.data_dir or "data"))


def _run(args) -> dict:
    from .train import run
    cfg = config_from_args(args)
    result = run(cfg)
    folder = result.save(Path(cfg.results_dir) / f"{cfg.dataset}-{cfg.method}-{cfg.task}-seed{cfg.seed}")
    s = result.summary
    if s["resumed_from_batch"] is not None:
        print(f"resumed from the checkpoint at batch {s['resumed_from_batch']}")
    print(f"{cfg.method} on {cfg.dataset} ({cfg.task}), {s['n_interactions']:,} interactions, "
          f"{s['samples_per_second']:,.0f} samples/s")
    for stage in ("offline", "online"):
        print(f"  {stage:>7}: loss {s[f'{stage}_loss']:.4f}  accuracy {s[f'{stage}_accuracy']:.4f}")
    print(f"  embedding bytes {s['embedding_bytes']:,} ({s['embedding_parameters']:,} parameters)")
    if "ids_per_space" in s:
        print("  stored at each size: " + "; ".join(f"{side}s {sizes}" for side, sizes in s["ids_per_space"].items()))
    print(f"wrote {folder}")
    return s


def _compare(args) -> int:
    """``compare`` and ``sweep``: Table 2's grid, in this process or on a scheduler; runs.csv and overall.md."""
    from . import tuning
    from .experiments import compare, overall_table, paper_table, save_table, save_tables
    base = config_from_args(args)
    _grid(base, args.methods, args.tasks)
    folder = Path(args.results_dir)
    base = tuning.ensure_tuned(base, None, args.methods, args.tasks, _trials(args), folder, workers=args.workers)
    runs = compare(base, args.methods, args.tasks, args.seeds, results_dir=folder / "runs", scheduler=args.scheduler,
                   workers=args.workers, gpus_per_run=args.gpus_per_run, reuse=args.command == "sweep")
    save_table(runs, folder, "runs")
    done = runs.dropna(subset=["online_loss"])
    if len(done):
        table = overall_table(done)
        save_table(table, folder, "overall")
        save_tables(folder, table2=paper_table(table))
        print(table.to_markdown(index=False, floatfmt=".4f"))
    failed = runs[runs["online_loss"].isna()]
    for row in failed.itertuples():
        print(f"failed: {row.task}-{row.method}-seed{row.seed}: {row.error}", file=sys.stderr)
    print(f"wrote {folder}" + (f"; {len(failed)} of {len(runs)} runs failed, the others are saved and are reused "
                               "when the sweep is run again" if len(failed) else ""))
    return 1 if len(failed) else 0


def _report(args) -> None:
    from .report import ReportSettings, rejudge, summary_lines
    if args.rejudge:
        claims = rejudge(args.results_dir or f"results/report/{args.dataset}")
        print("\n".join(summary_lines(claims)))
        return None
    regimes = check_regimes(args.regimes) if args.regimes else None  # before anything runs
    base = config_from_args(args)
    _grid(base, args.methods, args.tasks)
    figure1 = None if args.no_figure1 else dataclasses.replace(
        FIGURE1, train_sizes=tuple(args.train_sizes), n_test=args.n_test, n_validation=args.n_validation,
        max_epochs=args.max_epochs, l2_grid=tuple(args.l2_grid), protocol=args.figure1_protocol)
    settings = ReportSettings(base, Path(args.results_dir or f"results/report/{base.dataset}"), tuple(args.tasks),
                              tuple(args.seeds), tuple(args.methods), figure1=figure1, frontier=args.frontier,
                              workers=args.workers, scheduler=args.scheduler, gpus_per_run=args.gpus_per_run,
                              tune_trials=_trials(args), command=args.command_line)
    _write_report(settings) if not regimes else _write_regimes(settings, regimes)


def _write_regimes(settings, regimes) -> None:
    from .figures import TABLE2_CLAIMS
    from .report import regime_table, regimes_report, where_it_holds
    claims = regimes_report(settings, regimes)
    table = regime_table(claims, regimes)
    print("Table 2's claims in each regime (every claim: REPORT.md):")
    print(table[table["claim"].isin(TABLE2_CLAIMS)].drop(columns="bucket").to_string(index=False))
    print("\n".join(where_it_holds(claims, regimes)))
    print(f"wrote {settings.results_dir / 'REPORT.md'} and {settings.results_dir / 'claims.csv'}, and a report per "
          f"regime in {settings.results_dir}/<regime>/")


def _demo(args) -> None:
    """The reproduction report at quick settings on the built-in synthetic stream (:meth:`ReportSettings.demo`),
    under each of ``--regimes`` (none: one report); it ends with the verdicts."""
    from .report import ReportSettings
    regimes = check_regimes(args.regimes) if args.regimes else None
    settings = ReportSettings.demo(args.results_dir, progress=not args.no_progress, command=args.command_line,
                                   threads=args.threads, max_interactions=args.max_interactions,
                                   seeds=tuple(args.seeds), tasks=tuple(args.tasks))
    _write_report(settings) if not regimes else _write_regimes(settings, regimes)


def _write_report(settings) -> None:
    from .report import report, summary_lines
    claims = report(settings)
    print("\n".join(summary_lines(claims)))
    print(f"wrote {settings.results_dir / 'REPORT.md'} and {settings.results_dir / 'claims.csv'}")


def _frontier(args) -> None:
    from .frontier import points
    from .report import frontier_report, summary_lines
    base = dataclasses.replace(config_from_args(args), progress=False)
    thresholds = [_thresholds(t) for t in args.thresholds]
    settings = points(args.fse_widths, thresholds, args.penalties, fresh=not args.no_fresh, soft=not args.no_soft,
                      floor=not args.no_floor)
    folder = Path(args.results_dir or f"results/frontier/{base.dataset}")
    data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    claims = frontier_report(base, data, settings, args.seeds, folder, args.workers, args.command_line,
                             scheduler=args.scheduler)
    print((folder / "FRONTIER.md").read_text())
    if len(claims):
        print("\n".join(summary_lines(claims)))
    print(f"wrote {folder / 'FRONTIER.md'}")


def _trials(args) -> int:
    """The tuning budget of compare, sweep and report: --tune-trials, or 0 with --no-tune."""
    if args.tune_trials < 0:
        raise DataError(f"--tune-trials must be 0 or more, got {args.tune_trials}", hint="--tune-trials 16")
    return 0 if args.no_tune else args.tune_trials


def _tuning(p) -> None:
    p.add_argument("--tune-trials", type=int, default=TUNE_TRIALS,
                   help="a method with no tuned values for a task (none in params/<dataset>.yaml) is tuned first on "
                        "the stream's offline stage with this many trials; the values go to <results-dir>/tuned.yaml "
                        f"(default: {TUNE_TRIALS})")
    p.add_argument("--tune-interactions", type=int, default=None,
                   help="tune on the first N interactions of the offline stage only (default: all of it): for "
                        "streams of millions, where a trial on the whole offline stage costs as much as a run")
    p.add_argument("--no-tune", action="store_true", help="run such methods at the defaults (the report says untuned)")


def _thresholds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise DataError(f"--thresholds: {text!r} is not a comma-separated list of counts", hint="--thresholds 8,64 64,512") from None



def _run_control(p) -> None:
    p.add_argument("--checkpoint-dir", default=None, help="keep a resumable checkpoint of each run here")
    p.add_argument("--checkpoint-every", type=int, default=None,
                   help="batches between checkpoints (default: about every 5 minutes)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from the checkpoint in --checkpoint-dir")
    p.add_argument("--grad-clip", type=float, default=None, help="clip gradients to this global L2 norm")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run, saved with it (default: this process's; a dask worker's share)")


def _grid_flags(p, required: bool) -> None:
    """The grid of sweep and report: dataset, methods, tasks and seeds (5, both tasks), and the shared settings."""
    _dataset(p, required)
    _methods(p, TASKS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                   help="seeds, each run paired across methods")
    _settings(p)


def _dataset(p, required: bool = False) -> None:
    p.add_argument("--dataset", required=required, default=None, help="one of: " + ", ".join(dataset_names()))
    p.add_argument("--data-dir", default=None, help="the folder holding the dataset's files (default: the params "
                   "file's data_dir, else $AUTOEMB_DATA_DIR or ./data)")


def _methods(p, tasks) -> None:
    p.add_argument("--methods", nargs="+", default=list(TABLE2), help="any of: " + ", ".join(METHODS))
    p.add_argument("--tasks", nargs="+", default=list(tasks), help="regression, classification or both")


def _settings(p) -> None:
    """--max-interactions, --device, --transform and --params: the settings every run command takes."""
    p.add_argument("--max-interactions", type=int, default=None,
                   help="stream only the first N interactions (default: all)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (cuda where there is one)")
    p.add_argument("--regime", default=None, help="a named bundle of settings for the embedding methods (the floor "
                   "runs as tuned): paper, esapn, tuned or competent; see autoemb_core/regimes.py")
    p.add_argument("--transform", default=None, help="the AutoEmb architecture's transform of each space (eq. 1-2): "
                   "bn-tanh (the paper's, the default), tanh, bn or linear")
    p.add_argument("--params", default=None, help="a YAML file of settings (see params/); flags override it")


def _scheduler(p, workers_help: str = "cells at a time: the local cluster's worker processes") -> None:
    p.add_argument("--scheduler", default=None,
                   help="where the runs go: local (a dask cluster on this machine) or tcp://HOST:PORT; "
                        "default: this process")
    p.add_argument("--workers", type=int, default=1, help=workers_help + "; also tuning trials at a time")
    p.add_argument("--gpus-per-run", type=float, default=0,
                   help="GPU resource each run reserves on the workers (1, or 0.5 to share), and runs on cuda")


class ShowDefaults(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless it says it already (or has none to show)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and "default" not in text and action.default not in (None, False, argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The command line; ``parser.commands`` maps each command to its own parser."""
    parser = argparse.ArgumentParser(prog="python -m autoemb_core", description=__doc__.replace("``", ""),
                                     formatter_class=ShowDefaults)
    sub = parser.add_subparsers(dest="command", required=True,
                                parser_class=functools.partial(argparse.ArgumentParser, formatter_class=ShowDefaults))
    parser.commands = sub.choices
    p = sub.add_parser("summary", help="load a dataset and print its statistics")
    _dataset(p, required=True)
    p.add_argument("--max-interactions", type=int, default=None,
                   help="stream only the first N interactions (default: all)")
    p.set_defaults(func=_summary)
    p = sub.add_parser("run", help="stream a dataset through one method and save its results")
    _dataset(p)
    p.add_argument("--method", default=None, help="one of: " + ", ".join(METHODS))
    p.add_argument("--task", default=None, help="regression or classification")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (default: 0)")
    _settings(p)
    p.add_argument("--results-dir", default=None, help="where the run's folder goes (default: results)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _run_control(p)
    p.add_argument("--fse-width", type=int, default=None, help="fse: the embedding size (default: sum of dims, 146)")
    p.add_argument("--storage", default=None,
                   help="full, or mixed: popularity-rule stores each id at its size only (autoemb-hard always does)")
    p.add_argument("--move-init", default=None, help="mixed storage: how a moved id's new row starts, transfer or fresh")
    p.add_argument("--memory-penalty", type=float, default=None, help="autoemb-hard: pressure towards smaller sizes")
    p.set_defaults(func=_run)
    p = sub.add_parser("download", help="download and unpack a MovieLens archive from GroupLens")
    p.add_argument("name")
    p.add_argument("--data-dir", default=None, help="the folder holding the dataset's files (default: the params "
                   "file's data_dir, else $AUTOEMB_DATA_DIR or ./data)")
    p.set_defaults(func=_download)
    p = sub.add_parser("compare", help="the overall comparison (Table 2): methods x tasks x seeds")
    _dataset(p)
    _methods(p, ["regression"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds, each run paired across methods")
    _settings(p)
    p.add_argument("--results-dir", default="results/compare", help="runs/, runs.csv, overall.md, table2.md")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _run_control(p)
    _scheduler(p)
    _tuning(p)
    p.set_defaults(func=_compare)
    p = sub.add_parser("sweep", help="compare's grid as resumable cells, on dask.distributed: a finished cell is "
                                     "skipped, a killed one resumes from its checkpoint, a failed one is reported")
    _grid_flags(p, required=False)
    p.add_argument("--results-dir", required=True,
                   help="runs/<cell>/ (results), checkpoints/<cell>/ (while running), runs.csv, overall.md, table2.md; "
                        "on a cluster, a folder every worker sees")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _run_control(p)
    _scheduler(p)
    _tuning(p)
    p.set_defaults(func=_compare)
    p = sub.add_parser("report", help="every claim of the paper, with its interval and verdict: REPORT.md, claims.csv")
    _grid_flags(p, required=True)
    p.add_argument("--results-dir", default=None, help="default: results/report/<dataset>; finished runs in it are reused")
    p.add_argument("--no-figure1", action="store_true", help="skip Figure 1's capacity study (many models)")
    p.add_argument("--figure1-protocol", default=FIGURE1.protocol, help="Figure 1's training: capacity (early "
                   "stopping, the best L2), paper (a fixed number of epochs, no early stopping, no L2) or both "
                   f"(default: {FIGURE1.protocol})")
    p.add_argument("--train-sizes", nargs="+", type=int, default=list(FIGURE1.train_sizes),
                   help="Figure 1's grid of x, training ratings per study user")
    p.add_argument("--n-test", type=int, default=FIGURE1.n_test, help="Figure 1's test ratings per study user")
    p.add_argument("--n-validation", type=int, default=FIGURE1.n_validation,
                   help="Figure 1's validation ratings per study user")
    p.add_argument("--max-epochs", type=int, default=FIGURE1.max_epochs, help="Figure 1: most epochs before early stopping")
    p.add_argument("--l2-grid", nargs="+", type=float, default=list(FIGURE1.l2_grid),
                   help="Figure 1: the embedding_l2 values tried per model, the best on validation kept")
    p.add_argument("--frontier", action="store_true", help="add the memory frontier (hard selection; see frontier)")
    p.add_argument("--rejudge", action="store_true", help="run nothing: judge the finished report in --results-dir "
                   "again under today's verdicts, from its claims.csv, runs.csv and report.json")
    p.add_argument("--regimes", nargs="+", default=None, help="judge every claim under each of these regimes, side by "
                   "side: paper, esapn, tuned, competent (see autoemb_core/regimes.py); default: one report at the "
                   "given settings")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _run_control(p)
    _scheduler(p, "runs at a time: the local cluster's workers; without a scheduler, the frontier's and Figure 1's "
               "processes")
    _tuning(p)
    p.set_defaults(func=_report)
    p = sub.add_parser("frontier", help="the memory frontier: online loss against embedding bytes, FRONTIER.md")
    _dataset(p, required=True)
    p.add_argument("--task", default=None, help="regression (the default) or classification")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds, each run paired across methods")
    _settings(p)
    p.add_argument("--fse-widths", nargs="+", type=int, default=list(FSE_WIDTHS), help="FSE's widths")
    p.add_argument("--thresholds", nargs="+", default=[",".join(map(str, t)) for t in RULE_THRESHOLDS],
                   help="the popularity rule's thresholds, one comma-separated pair per point")
    p.add_argument("--penalties", nargs="+", type=float, default=list(HARD_PENALTIES),
                   help="hard AutoEmb's memory penalties, one point each")
    p.add_argument("--no-fresh", action="store_true", help="skip hard AutoEmb with the other move_init")
    p.add_argument("--no-soft", action="store_true", help="skip soft AutoEmb")
    p.add_argument("--no-floor", action="store_true", help="skip the reference predictors (biases, item-mean)")
    p.add_argument("--results-dir", default=None, help="default: results/frontier/<dataset>; its runs are reused")
    _scheduler(p, "runs at a time: each in its own process, or the local cluster's workers")
    p.set_defaults(func=_frontier)
    p = sub.add_parser("demo", help="the reproduction report at quick settings on the built-in synthetic stream")
    p.add_argument("--results-dir", default="results/demo", help="the report's folder")
    p.add_argument("--max-interactions", type=int, default=DEMO_INTERACTIONS,
                   help="stream only the first N interactions of synthetic (fewer: quicker, and decides less)")
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEMO_SEEDS), help="seeds, each run paired across methods")
    p.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), choices=["regression", "classification"])
    p.add_argument("--regimes", nargs="*", default=list(DEMO_REGIMES),
                   help="a report under each, and the table of verdicts by regime (none: one report at tuned values)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per run, saved with it")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = "python -m autoemb_core " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    if hasattr(args, "threads"):
        args.threads, busy = busy_threads(args.threads)
        if busy:
            print(busy, file=sys.stderr)
    try:
        code = args.func(args)
        return code if isinstance(code, int) else 0  # compare and sweep: 1 when a run failed
    except (DataError, RuntimeError) as exc:
        print(f"error: {in_flags(str(exc), parser.commands[args.command])}", file=sys.stderr)
        return 2


def idle_cores(interval: float = 0.2) -> float:
    """How many cores the other jobs leave idle, measured over ``interval`` seconds from /proc/stat (no lag, unlike
    the load average, which a job started a few seconds ago has not yet raised); elsewhere, cores minus the 1-minute
    load."""
    import os
    import time
    cores = os.cpu_count() or 1

    def idle_and_total():
        with open("/proc/stat") as stat:
            ticks = [int(x) for x in stat.readline().split()[1:9]]
        return ticks[3] + ticks[4], sum(ticks)  # idle and iowait; user ... steal

    try:
        idle0, total0 = idle_and_total()
        time.sleep(interval)
        idle1, total1 = idle_and_total()
        return cores * (idle1 - idle0) / max(total1 - total0, 1)
    except (OSError, ValueError, IndexError):
        try:
            return max(0.0, cores - os.getloadavg()[0])
        except (AttributeError, OSError):
            return float(cores)


def busy_threads(threads: int | None, idle: float | None = None) -> tuple[int | None, str | None]:
    """The threads per run when none are asked for: the cores the other jobs leave idle, at least 1, so that no
    thread spins against them (beside two busy loops on 2 cores, 2 threads made an AutoEmb step 2.1 times as
    slow as 1: benchmarks/threads.md); on a quiet machine, as before (torch's, one per core). Returns the count
    (None: unchanged) and one line saying so."""
    import os
    cores = os.cpu_count() or 1
    if threads is not None or cores == 1:
        return threads, None
    idle = idle_cores() if idle is None else idle
    free = max(1, int(idle + 0.5))
    if free >= cores:
        return None, None
    return free, (f"this machine is busy ({idle:.1f} of {cores} cores idle): each run uses {free} thread"
                  f"{'s' if free > 1 else ''} so as not to compete with the other jobs (--threads N to choose)")


def in_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """A message in the CLI's dialect: each setting it names as a keyword (``data_dir=<folder>``), or bare when
    the name is an identifier (``results_dir``), that is a flag of this command becomes the flag
    (``--data-dir <folder>``)."""
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and action.dest != "help":
                message = re.sub(rf"\b{action.dest}=", flag + " ", message)
                if "_" in action.dest:
                    message = re.sub(rf"(?<![-/\w]){action.dest}\b(?![/=])", flag, message)
    return message


if __name__ == "__main__":
    sys.exit(main())
