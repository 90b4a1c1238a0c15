"""Throughput of two commits, measured in the same run: is a change neutral for the methods it should not touch?

    python benchmarks/compare_commits.py BASE [HEAD] [--methods fse autoemb] [--rounds 3] [--steps 40] [--json PATH]

Each commit is checked out into a temporary git worktree. For every method, ``throughput.py``'s fast variant
(10,000 rows per side, one fresh subprocess per measurement) runs for BASE and HEAD in alternation, ``--rounds``
times, so that both see the same machine load. The ratio is HEAD's median samples/s over BASE's, per method; the
working tree itself is used for HEAD when it is omitted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worktree(commit: str, folder: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit], check=True,
                   capture_output=True)
    return folder


def environment(tree: Path) -> dict:
    """The environment that makes ``tree``'s autoemb_core the one imported (checked)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = subprocess.run([sys.executable, "-c", "import autoemb_core; print(autoemb_core.__file__)"], env=env,
                           capture_output=True, text=True, cwd=tree).stdout.strip()
    if not Path(found).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree}: autoemb_core is imported from {found}, not from the worktree")
    return env


def measure(tree: Path, env: dict, method: str, steps: int, threads: int) -> float:
    """samples/s of one fast step measurement of ``method`` with the code in ``tree``."""
    spec = {"method": method, "rows": 10_000, "variant": "fast", "steps": steps, "warmup": 10, "device": "cpu",
            "dataset": "synthetic", "profile": False}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "throughput.py"), "--threads", str(threads),
                           "--one", json.dumps(spec)], capture_output=True, text=True, cwd=tree, env=env)
    if done.returncode:
        raise SystemExit(f"{tree}: {method} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["samples_per_s"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("head", nargs="?", default=None, help="default: the working tree")
    p.add_argument("--methods", nargs="+", default=["fse", "sam", "darts", "autoemb"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": worktree(args.base, Path(tmp) / "base"),
                 "head": worktree(args.head, Path(tmp) / "head") if args.head else ROOT}
        try:
            envs = {name: environment(tree) for name, tree in trees.items()}
            records = []
            for method in args.methods:
                rates = {"base": [], "head": []}
                for _ in range(args.rounds):
                    for name in ("base", "head"):
                        rates[name].append(measure(trees[name], envs[name], method, args.steps, args.threads))
                base, head = statistics.median(rates["base"]), statistics.median(rates["head"])
                records.append({"method": method, "base_samples_per_s": base, "head_samples_per_s": head,
                                "ratio": head / base, "rounds": rates})
                print(f"{method:>10}: base {base:,.0f}  head {head:,.0f} samples/s  ratio {head / base:.3f}", flush=True)
        finally:
            for name in ("base", "head"):
                if trees[name] != ROOT:
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[name])],
                                   capture_output=True)
    if args.json:
        sys.path.insert(0, str(ROOT))
        from autoemb_core.atomic import write_json_atomic
        write_json_atomic(args.json, {"base": args.base, "head": args.head or "working tree", "records": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
