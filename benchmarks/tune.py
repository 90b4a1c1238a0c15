"""Tune a dataset's methods by the tuning protocol and write the values into ``params/<dataset>.yaml``.

    python benchmarks/tune.py --dataset ml-100k [--data-dir data] [--tasks regression classification]
        [--methods ...] [--trials 16] [--folder benchmarks/tuning/<dataset>] [--write] [--tuned-yaml FILE] [--workers N]
        [--max-interactions N] [--tune-interactions N]

The protocol is :mod:`autoemb_core.tuning`'s, the one ``report``, ``compare`` and ``sweep`` run on a stream with no
tuned values: Optuna's seeded TPE over each method's space in the method table, ``--trials`` per method, on data
that is not reported. Here that is the offline stage of the dataset, or for a synthetic preset the offline stage of
another draw of its generator (``--tuning-seed``, default 1), so not even the offline stage of a reported run is
seen. The studies (Optuna journals, resumable) and every trial (CSV) go to ``--folder``; with ``--write`` the
chosen values go into the ``tuned:`` block of ``params/<dataset>.yaml`` (the rest of the file, and the values of
methods not tuned now, are kept), which ``run``, ``compare``, ``report`` and the notebooks apply unless a value is
given explicitly. Methods are retuned here even where params/ has values for them.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core import tuning  # noqa: E402
from autoemb_core.atomic import atomic_write  # noqa: E402
from autoemb_core.config import Config  # noqa: E402
from autoemb_core.methods import TUNED  # noqa: E402


def tuning_stream(dataset: str, data_dir, tuning_seed: int, interactions: int | None = None, most: int | None = None):
    """The offline stage of ``dataset`` (of another generator draw for synthetic presets; of its first ``most``
    interactions where given), its first ``interactions`` only where given (``tune_interactions``)."""
    from autoemb_core.data import load_dataset
    from autoemb_core.synthetic import PRESETS
    data = (load_dataset(dataset, seed=tuning_seed, max_interactions=most) if dataset in PRESETS
            else load_dataset(dataset, data_dir, max_interactions=most))
    return tuning.tuning_stream(data, Config(tune_interactions=interactions))


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
    parser.add_argument("--trials", type=int, default=16, help="finished trials per method (default: 16)")
    parser.add_argument("--tuning-seed", type=int, default=1, help="generator seed of a synthetic tuning stream")
    parser.add_argument("--workers", type=int, default=1, help="trials at a time, each in its own process (default: 1)")
    parser.add_argument("--max-interactions", type=int, default=None,
                        help="the stream the values are for: its first N interactions (default: all)")
    parser.add_argument("--tune-interactions", type=int, default=None,
                        help="tune on the first N interactions of its offline stage only (default: all of it)")
    parser.add_argument("--folder", default=None, help="the studies and trials (default: benchmarks/tuning/<dataset>)")
    parser.add_argument("--write", action="store_true", help="write the chosen values into params/<dataset>.yaml")
    parser.add_argument("--tuned-yaml", default=None, help="also write them as a tuned: block to this file (a params "
                        "file for --params, as report's tuned.yaml)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.folder or ROOT / "benchmarks" / "tuning" / args.dataset)
    data = tuning_stream(args.dataset, args.data_dir, args.tuning_seed, args.tune_interactions, args.max_interactions)
    params = ROOT / "params" / f"{args.dataset}.yaml"
    # the values already tuned, for a nested method's first point (tuning.nested_start); not applied to any trial
    tuned = (yaml.safe_load(params.read_text()) or {}).get("tuned", {}) if params.is_file() else {}
    base, chosen = Config(dataset=args.dataset, progress=False, tuned=tuned), {}
    for task in args.tasks:
        for m in [m for m in TUNED if m in args.methods]:  # table order: a nested method before the one nesting it
            chosen.setdefault(task, {})[m] = tuning.tune_method(tuning.with_chosen(base, chosen), data, m, task,
                                                                args.trials, folder, workers=args.workers)
    for task, by in chosen.items():
        for method, r in by.items():
            print(f"{task:>14} {method:>15}: {r['score']:.5f} ({r['trials']} trials, {r['pruned']} pruned, "
                  f"{r['seconds']:.0f} s) {r['values']}" + "".join(f"\n  warning: {e}" for e in r["edges"]))
    if args.tuned_yaml:
        tuning.write_tuned_yaml(Path(args.tuned_yaml), chosen, data, args.trials)
        print(f"wrote {args.tuned_yaml}")
    if args.write:
        stage = ("offline stage of generator seed %d" % args.tuning_seed if args.dataset.startswith("synthetic")
                 else "offline stage only") + (f" (its first {len(data):,} interactions)" if args.tune_interactions
                                               or args.max_interactions else "")
        note = (f"{', '.join(args.methods)}: {datetime.date.today()}, Optuna TPE, {args.trials} trials per method, "
                f"scored on the {stage}")
        write_tuned(params, {task: {m: r["values"] for m, r in by.items()} for task, by in chosen.items()}, note)
        print(f"wrote the tuned block of {params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
