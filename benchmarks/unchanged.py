"""Did a refactoring change what any run computes? Reruns a fixed set of runs and compares them, bit for bit,
with the values recorded before the change.

    python benchmarks/unchanged.py --check            # compare with benchmarks/unchanged.json
    python benchmarks/unchanged.py --record           # (re)record them, at a commit known to be right
    python benchmarks/unchanged.py --check --set row_gradient=mean   # a changed default, against a record before it

The set: every method, both tasks, seed 0, on the first 20,000 interactions of ``synthetic`` with its tuned values
(what ``run --dataset synthetic --max-interactions 20000`` resolves to), and one autoemb run killed (SIGKILL, in a
subprocess) after its first checkpoint and resumed. Per run it compares every metric of ``summary.json`` that a run
computes (the losses, accuracies, hypergradient ratio, memory counts, hard selection's ids per space and moves) and a
SHA-256 of the per-batch and per-sample losses. One thread, so that sums are ordered alike; bits are compared on one
machine (another CPU or BLAS build may round differently).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORD = ROOT / "benchmarks" / "unchanged.json"
STREAM = dict(dataset="synthetic", max_interactions=20_000, seed=0, progress=False, device="cpu", threads=1)
COMPUTED = ("offline_loss", "offline_accuracy", "online_loss", "online_accuracy", "hypergradient_second_order_ratio",
            "embedding_bytes", "selection_bytes", "embedding_parameters", "ids_per_space", "moves")
RESUMED = ("autoemb", "classification")


def fingerprint(result) -> dict:
    """What a run computed: its summary's metrics and digests of its per-batch and per-sample losses."""
    out = {k: result.summary[k] for k in COMPUTED if k in result.summary}
    out["batch_losses"] = hashlib.sha256(result.batches["loss"].to_numpy().tobytes()).hexdigest()
    out["sample_losses"] = hashlib.sha256(result.samples["loss"].to_numpy().tobytes()).hexdigest()
    return out


SETTINGS: dict = {}  # --set: settings every run takes (a default that changed since the record, at its old value)


def config(method: str, task: str, **extra):
    from autoemb_core.config import resolve
    return resolve({**STREAM, **SETTINGS, "method": method, "task": task, **extra})


def runs() -> dict:
    from autoemb_core.methods import METHODS
    from autoemb_core.train import run
    return {f"{task}/{method}": fingerprint(run(config(method, task)))
            for task in ("regression", "classification") for method in METHODS}


def resumed() -> dict:
    """autoemb, killed after its first checkpoint (every 5 batches) and resumed with ``resume``."""
    from autoemb_core.train import run
    method, task = RESUMED
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.Popen([sys.executable, __file__, "--child", folder,
                                  *(["--set", *(f"{k}={v}" for k, v in SETTINGS.items())] if SETTINGS else [])], cwd=ROOT)
        deadline = time.time() + 600
        while not list(Path(folder).glob("*.pt")) and child.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        killed = child.poll() is None
        if killed:
            os.kill(child.pid, signal.SIGKILL)
        child.wait()
        if not killed:
            raise SystemExit("the run to be killed ended before its first checkpoint")
        result = run(config(method, task, checkpoint_dir=folder, checkpoint_every=5, resume=True))
        if not result.summary.get("resumed_from_batch"):
            raise SystemExit("the resumed run did not resume from a checkpoint")
        return {f"{task}/{method}/resumed": fingerprint(result)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--record", action="store_true")
    mode.add_argument("--child", metavar="FOLDER", help=argparse.SUPPRESS)
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="settings for every run, e.g. a default that changed since the record at its old value")
    args = p.parse_args(argv)
    import yaml
    SETTINGS.update({k: yaml.safe_load(v) for k, _, v in (pair.partition("=") for pair in args.set)})
    if args.child:
        from autoemb_core.train import run
        run(config(*RESUMED, checkpoint_dir=args.child, checkpoint_every=5))
        return 0
    began = time.perf_counter()
    now = {**runs(), **resumed()}
    if args.record:
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(now)} runs in {RECORD.relative_to(ROOT)} ({time.perf_counter() - began:.0f} s)")
        return 0
    before = json.loads(RECORD.read_text())
    differ = sorted(k for k in before if before[k] != now.get(k))
    for key in differ:
        old, new = before[key], now.get(key, {})
        fields = sorted(f for f in old.keys() | new.keys() if old.get(f) != new.get(f))
        print(f"DIFFERS {key}: " + "; ".join(f"{f} {old.get(f)!r} -> {new.get(f)!r}" for f in fields))
    added = sorted(now.keys() - before.keys())
    print(f"{len(before) - len(differ)} of {len(before)} recorded runs identical bit for bit"
          + (f"; not in the record (new methods): {', '.join(added)}" if added else "")
          + f" ({time.perf_counter() - began:.0f} s)")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
