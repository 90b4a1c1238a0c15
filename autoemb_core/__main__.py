"""Command line: ``python -m autoemb_core {summary,download,demo} ...``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data import dataset_names, load_dataset
from .interactions import DataError
from .atomic import write_json_atomic
from .config import METHODS, Config


def _summary(args) -> dict:
    data = load_dataset(args.dataset, args.data_dir, max_interactions=args.max_interactions)
    summary = data.summary()
    for key, value in summary.items():
        print(f"{key:>28}: {value}")
    return summary


def _download(args) -> None:
    from .download import download
    print(download(args.name, args.data_dir or "data"))


def _run(args) -> dict:
    from .train import run
    overrides = {k: getattr(args, k) for k in ("dataset", "data_dir", "method", "task", "seed", "max_interactions",
                                               "results_dir", "device")}
    overrides["progress"] = not args.no_progress
    cfg = Config.from_yaml(args.params, **overrides) if args.params else Config(**{k: v for k, v in overrides.items() if v is not None})
    result = run(cfg)
    folder = result.save(Path(cfg.results_dir) / f"{cfg.dataset}-{cfg.method}-{cfg.task}-seed{cfg.seed}")
    s = result.summary
    print(f"{cfg.method} on {cfg.dataset} ({cfg.task}), {s['n_interactions']:,} interactions, "
          f"{s['samples_per_second']:,.0f} samples/s")
    for stage in ("offline", "online"):
        print(f"  {stage:>7}: loss {s[f'{stage}_loss']:.4f}  accuracy {s[f'{stage}_accuracy']:.4f}")
    print(f"wrote {folder}")
    return s


def _demo(args) -> None:
    """The built-in study on the synthetic stream; for now a data summary of it."""
    args.dataset, args.data_dir, args.max_interactions = "synthetic", None, None
    summary = _summary(args)
    out = Path(args.results_dir) / "synthetic_summary.json"
    write_json_atomic(out, summary)
    print(f"wrote {out}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autoemb_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help="load a dataset and print its statistics")
    p.add_argument("--dataset", required=True, help="one of: " + ", ".join(dataset_names()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-interactions", type=int, default=None)
    p.set_defaults(func=_summary)
    p = sub.add_parser("run", help="stream a dataset through one method and save its results")
    p.add_argument("--dataset", default=None, help="one of: " + ", ".join(dataset_names()))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--method", default=None, choices=METHODS)
    p.add_argument("--task", default=None, choices=["regression", "classification"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-interactions", type=int, default=None)
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "auto"])
    p.add_argument("--params", default=None, help="a YAML file of settings (see params/); flags override it")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    p = sub.add_parser("download", help="download and unpack a MovieLens archive from GroupLens")
    p.add_argument("name")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_download)
    p = sub.add_parser("demo", help="run the built-in study on the synthetic stream")
    p.add_argument("--results-dir", default="results/demo")
    p.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (DataError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
