"""`make demo` on a quiet machine and beside busy loops, in the same run: the ratio a shared machine costs.

    python benchmarks/demo_load.py [--busy 2] [--rounds 1] [--out benchmarks/demo_load.md]

Each round runs the demo (``python -m autoemb_core demo``, its default settings, a fresh results folder) once with
nothing else started, then once beside ``--busy`` loops of pure Python (one core each). The demo picks its own
threads (one line says so when the machine is busy); that line is recorded. Start it on an otherwise idle machine:
the quiet time is only quiet if nothing else runs.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from autoemb_core.atomic import atomic_write  # noqa: E402


def demo(folder: Path) -> tuple[float, str]:
    """Seconds the demo took, and its line about threads (empty when it printed none)."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autoemb_core", "demo", "--no-progress", "--results-dir", str(folder)],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if done.returncode:
        raise SystemExit(f"the demo failed:\n{done.stderr[-3000:]}")
    line = next((x for x in done.stderr.splitlines() if "busy" in x), "")
    return seconds, line


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--busy", type=int, default=2, help="busy loops beside the second demo")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "demo_load.md"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.rounds):
            for busy in (0, args.busy):
                loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
                try:
                    time.sleep(1.0 if busy else 0.0)
                    load = os.getloadavg()[0]
                    seconds, line = demo(Path(scratch) / f"round{r}-busy{busy}")
                finally:
                    for loop in loops:
                        loop.kill()
                rows.append({"round": r, "busy loops": busy, "seconds": round(seconds, 1),
                             "load at start": round(load, 2), "threads line": line or "(none: quiet)"})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    quiet = statistics.median(table.loc[table["busy loops"] == 0, "seconds"])
    loaded = statistics.median(table.loc[table["busy loops"] == args.busy, "seconds"])
    text = (f"# `make demo` on a quiet machine and beside {args.busy} busy loops\n\n"
            f"`python benchmarks/demo_load.py --busy {args.busy} --rounds {args.rounds}`; "
            f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, all in one run.\n\n"
            f"{table.to_markdown(index=False)}\n\n"
            f"Median: quiet {quiet:.0f} s, beside {args.busy} busy loops {loaded:.0f} s: **{loaded / quiet:.2f}×**.\n")
    with atomic_write(Path(args.out), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
