"""Threads on a shared machine: a batch-500 step with 1 torch thread and with one per core, on a quiet machine and
beside busy loops, all in the same run (the machine's other load is what it is: say so beside the figures).

    python benchmarks/threads.py [--methods fse autoemb] [--busy 0 2] [--steps 20] [--rounds 3]

Each (busy, threads, method, round) runs in a fresh subprocess: ``synthetic``'s first 25,000 interactions, 3 warm-up
steps, then the median of ``--steps`` timed Algorithm-1 steps. ``--busy K`` starts K processes that spin on one core
each (what other users' jobs do to a shared server) for the duration of its rows. Writes ``benchmarks/threads.md``:
the median step time over rounds and each setting's ratio to one thread under the same load.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autoemb_core.atomic import atomic_write  # noqa: E402

CHILD = """
import statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from autoemb_core.config import Config
from autoemb_core.data import load_dataset
from autoemb_core.train import StreamingTrainer
trainer = StreamingTrainer(load_dataset("synthetic", max_interactions=25_000),
                           Config(method=sys.argv[2], progress=False, device="cpu"))
for index in range(3):
    trainer.step(index)
times = []
for index in range(3, 3 + int(sys.argv[3])):
    began = time.perf_counter()
    trainer.step(index)
    times.append(time.perf_counter() - began)
print(statistics.median(times))
"""

SPIN = "while True: pass"


def step_seconds(threads: int, method: str, steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), method, str(steps)], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return float(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", nargs="+", default=["fse", "autoemb"])
    p.add_argument("--busy", nargs="+", type=int, default=[0, 2])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    rows = []
    for busy in args.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
        try:
            load = os.getloadavg()[0]
            for method in args.methods:
                for threads in sorted({1, cores}):
                    times = [step_seconds(threads, method, args.steps) for _ in range(args.rounds)]
                    rows.append({"busy loops": busy, "method": method, "threads": threads,
                                 "step ms (median)": 1000 * statistics.median(times), "load at start": round(load, 1)})
                    print(rows[-1], flush=True)
        finally:
            for s in spinners:
                s.kill()
    frame = pd.DataFrame(rows)
    one = frame[frame["threads"] == 1].set_index(["busy loops", "method"])["step ms (median)"]
    frame["time / 1 thread"] = [r["step ms (median)"] / one[(r["busy loops"], r["method"])] for _, r in frame.iterrows()]
    text = ("# Threads on a shared machine\n\n"
            f"`python benchmarks/threads.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
            f"{datetime.date.today()}, {platform.machine()}, {cores} cores, {args.rounds} rounds of {args.steps} steps, "
            "all in one run. `load at start`: the 1-minute load average when the row's busy loops had started.\n\n"
            + frame.to_markdown(index=False, floatfmt=".2f") + "\n")
    with atomic_write(ROOT / "benchmarks" / "threads.md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
