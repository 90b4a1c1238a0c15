"""Fair tuning: every method's rates chosen by one protocol and one budget, never on reported data.

    python benchmarks/tune.py --dataset ml-100k [--data-dir data] [--tasks regression classification]
        [--methods ...] [--points 4] [--seeds 0 1] [--workers 2] [--write]

The protocol, the same for every method, the reference predictors included:

- **Data that is not reported.** Runs see only the offline stage (the first ``offline_fraction``) of the
  stream; the online stage, which Table 2 reports, is never loaded. For a synthetic preset the stream is
  another draw of the generator (``--tuning-seed``, default 1), so not even its offline stage is reported.
- **Score.** The prequential loss over that whole prefix: every batch predicted before it is trained on,
  as in reported runs, averaged over ``--seeds`` (at least 2).
- **Budget.** ``--points`` configurations per method: the defaults, then random draws, log-uniform over the
  method's own settings (:data:`SPACE`), from a generator seeded by the method's name, so a rerun draws the
  same points. ``global-mean`` has no setting and gets one point.
- **Isolation.** Tuning runs keep everything in memory: no checkpoints, no results folders.

Every trial goes to ``benchmarks/tuning/<dataset>-<task>.csv``; with ``--write`` the chosen values go into the
``tuned:`` block of ``params/<dataset>.yaml`` (the rest of the file, and the values of methods not tuned now, are
kept), which ``run``, ``compare``
and the notebooks apply to that method unless a value is given explicitly.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import Config  # noqa: E402
from autoemb_core.methods import TABLE, TUNED  # noqa: E402

SPACE = {m: TABLE[m].space for m in TUNED}  # each method's log-uniform ranges, from the method table


def log_uniform(rng, lo, hi) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def points(method: str, n: int, base: Config) -> list[dict]:
    """The defaults, then ``n - 1`` draws from ``SPACE[method]`` (one point if it has no setting)."""
    space = SPACE[method]
    default = {k: (list(base.rule_thresholds) if k == "popularity_thresholds" else getattr(base, k)) for k in space}
    if not space:
        return [{}]
    rng = np.random.default_rng(int(hashlib.sha256(method.encode()).hexdigest()[:8], 16))
    draws = [default]
    for _ in range(n - 1):
        point = {}
        for key, spec in space.items():
            if key == "popularity_thresholds":
                first = round(log_uniform(rng, *spec[0]))
                point[key] = [first, first * max(2, round(log_uniform(rng, *spec[1])))]
            else:
                point[key] = float(f"{log_uniform(rng, *spec):.3g}")
        draws.append(point)
    return draws


def tuning_stream(dataset: str, data_dir, tuning_seed: int, offline_fraction: float):
    """The offline stage of ``dataset`` (of another generator draw for synthetic presets)."""
    from autoemb_core.data import load_dataset
    from autoemb_core.synthetic import PRESETS
    data = load_dataset(dataset, seed=tuning_seed) if dataset in PRESETS else load_dataset(dataset, data_dir)
    return data.head(int(round(len(data) * offline_fraction)))


def trial(job) -> dict:
    """One (method, point, seed) run on the tuning stream, in a worker with one thread."""
    import torch
    torch.set_num_threads(1)
    from autoemb_core.train import run
    dataset, data_dir, tuning_seed, task, method, index, point, seed = job
    base = Config(dataset=dataset, task=task, method=method, seed=seed, progress=False)
    data = tuning_stream(dataset, data_dir, tuning_seed, base.offline_fraction)
    result = run(Config.from_dict({**base.to_dict(), **point}), data)
    b = result.batches
    score = float((b.loss * b["size"]).sum() / b["size"].sum())
    return {"task": task, "method": method, "point": index, "seed": seed, "settings": yaml.safe_dump(point,
            default_flow_style=True).strip(), "score": score, "seconds": result.summary["seconds"]}


def write_tuned(path: Path, tuned: dict, note: str) -> None:
    """Write ``tuned`` into the ``tuned:`` block at the end of ``path`` (or append one), keeping everything above
    it and the values of the methods not tuned now; ``note`` joins the block's comment line."""
    text = path.read_text()
    marker = "\n# tuned by benchmarks/tune.py"
    head, _, block = text.partition(marker)
    old = (yaml.safe_load(block.partition("\n")[2]) or {}).get("tuned", {}) if block else {}
    merged = {task: {**old.get(task, {}), **tuned.get(task, {})} for task in sorted(old.keys() | tuned.keys())}
    kept = any(set(old[task]) - set(tuned.get(task, {})) for task in old)  # values tuned earlier remain
    notes = f"{block.partition(chr(10))[0].lstrip(':').strip()}; {note}" if kept else note
    block = yaml.safe_dump({"tuned": merged}, sort_keys=True, default_flow_style=None, width=110)
    with atomic_write(path, "w") as f:
        f.write(f"{head.rstrip(chr(10))}\n{marker.strip()}: {notes}\n{block}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--tasks", nargs="+", default=["regression", "classification"])
    parser.add_argument("--methods", nargs="+", default=list(TUNED), choices=list(TUNED))
    parser.add_argument("--points", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--tuning-seed", type=int, default=1, help="generator seed of a synthetic tuning stream")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--write", action="store_true", help="write the chosen values into params/<dataset>.yaml")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2:
        parser.error("the protocol needs at least 2 seeds")
    base = Config(dataset=args.dataset)
    jobs = [(args.dataset, args.data_dir, args.tuning_seed, task, method, i, point, seed)
            for task in args.tasks for method in args.methods
            for i, point in enumerate(points(method, args.points, base)) for seed in args.seeds]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(trial, jobs):
            rows.append(row)
            print(f"{row['task']:>14} {row['method']:>15} point {row['point']} seed {row['seed']}: "
                  f"{row['score']:.5f}  {row['settings']}", flush=True)
    trials = pd.DataFrame(rows)
    out = ROOT / "benchmarks" / "tuning"
    out.mkdir(exist_ok=True)
    tuned = {}
    for task, frame in trials.groupby("task"):
        path = out / f"{args.dataset}-{task}.csv"  # the trials of the methods not tuned now are kept
        earlier = pd.read_csv(path) if path.is_file() else frame.iloc[:0]
        with atomic_write(path, "w") as f:
            pd.concat([earlier[~earlier["method"].isin(args.methods)], frame], ignore_index=True).to_csv(f, index=False)
        mean = frame.groupby(["method", "point", "settings"], as_index=False)["score"].mean()
        best = mean.loc[mean.groupby("method")["score"].idxmin()]
        print(f"\n{task}: chosen (mean prequential loss over the tuning prefix, {len(args.seeds)} seeds)")
        print(best.to_string(index=False))
        tuned[task] = {m: yaml.safe_load(s) for m, s in zip(best.method, best.settings) if yaml.safe_load(s)}
    if args.write:
        params = ROOT / "params" / f"{args.dataset}.yaml"
        note = (f"{', '.join(args.methods)}: {datetime.date.today()}, {args.points} points x seeds {args.seeds} per "
                f"method, scored on the "
                + ("offline stage of generator seed %d" % args.tuning_seed if args.dataset.startswith("synthetic")
                   else "offline stage only"))
        write_tuned(params, tuned, note)
        print(f"wrote the tuned block of {params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
