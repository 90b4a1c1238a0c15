"""Throughput of the streaming step, per method and table size, against a naive reference (issue 5).

    python benchmarks/throughput.py [--methods ...] [--rows ...] [--steps N] [--json PATH]

Every (method, rows, variant) runs in a fresh subprocess, so peak RSS is its own and nothing warms another.
The stream is ``synthetic`` (batch 500, dims [2, 16, 128], the paper's layer sizes) with its user and item ids
scattered at random over tables of ``rows`` rows per side; every page of the tables is touched before timing,
as it is after the first minutes of a long run. A step is one whole Algorithm-1 step (bilevel update,
prediction, training step, tables); figures are the median, min and max over ``--steps`` timed steps.

Variants: ``fast`` (the default engine), ``plain`` (``fast_path: false``: per-sample transforms, torch's tanh,
foreach Adam, a separate prediction forward) and ``naive``: the tables are whole-table parameters with dense
gradients and the table optimizer applied densely, and the bilevel step's unrolled W' is materialised for the whole model, as the public
DARTS code does by copying the model. The FLOP bound is the step's matrix-multiply FLOPs (counted on one step with torch's
FLOP formulas) at the matmul rate measured in the same run; "% bound" is bound time / step time.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from autoemb_core.config import Config
from autoemb_core.data import load_dataset
from autoemb_core.interactions import Interactions
from autoemb_core.learner import EmbeddingLearner, tensors_in
from autoemb_core.model import SIDES, optimizer_step, torch_optimizer_state
from autoemb_core.train import StreamingTrainer

PHASES = {"theta_step": "controller update", "predict": "evaluation", "learn": "training step and context"}


def scattered_stream(dataset: str, rows: int, seed: int = 0) -> Interactions:
    """``dataset`` with its ids moved to random distinct rows of ``rows``-row tables."""
    data = load_dataset(dataset)
    rng = np.random.default_rng(seed)
    if rows < max(data.n_users, data.n_items):
        raise SystemExit(f"--rows {rows} is smaller than {dataset}'s {data.n_users:,} users / {data.n_items:,} items")
    user = rng.choice(rows, data.n_users, replace=False)[data.user]
    item = rng.choice(rows, data.n_items, replace=False)[data.item]
    return Interactions(user, item, data.rating, data.timestamp, np.arange(rows), np.arange(rows), data.name)


class DenseTable:
    """A whole table as one parameter under torch's dense optimizer (the table optimizer's dense twin):
    every row's state moves every step."""

    def __init__(self, weight: torch.Tensor, cfg: Config):
        self.weight = nn.Parameter(weight)
        self.kind = cfg.table_optimizer
        if self.kind == "adam":
            self.opt = torch.optim.Adam([self.weight], lr=cfg.rows_lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
        elif self.kind == "adagrad":
            self.opt = torch.optim.Adagrad([self.weight], lr=cfg.rows_lr, eps=cfg.adam_eps)
        else:
            self.opt = torch.optim.SGD([self.weight], lr=cfg.rows_lr)
        self.cfg = cfg

    def state(self) -> dict:
        return {"weight": self.weight.data}

    def update(self, rows, grad):
        self.weight.grad = grad
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def virtual_step(self, grad):
        state = torch_optimizer_state(self.kind, self.opt, self.weight)
        return optimizer_step(self.kind, grad, state, self.cfg.rows_lr, self.cfg.adam_betas, self.cfg.adam_eps)


class NaiveLearner(EmbeddingLearner):
    """The straightforward implementation: W's leaves are the whole tables (dense gradients, dense
    optimizer), so the unrolled W' is a copy of the whole model."""

    def __init__(self, cfg, sizes, device, dtype):
        super().__init__(cfg, sizes, device, dtype)
        self.tables = {s: DenseTable(self.tables[s].weight, self.cfg) for s in SIDES}

    def w_leaves(self, view):
        return {**{f"{s}_rows": self.tables[s].weight for s in SIDES}, **dict(self.dlrs.named_parameters())}

    def leaf_step(self, key, p, g, train):
        if key.endswith("_rows"):
            return self.tables[key[:-len("_rows")]].virtual_step(g)
        return super().leaf_step(key, p, g, train)

    @torch.no_grad()
    def scores(self, view):
        weights = self.selection(view, self.theta(view))
        return self.outputs(self.w_leaves(view), weights, view, self.cfg.predict_batchnorm), weights

    def outputs(self, w, weights, view, bn_mode):
        gathered = {k: v.index_select(0, view.ids[k.split("_")[0]]) if k.endswith("_rows") else v for k, v in w.items()}
        return super().outputs(gathered, weights, view, bn_mode)


class CountFlops(TorchDispatchMode):
    """Matrix-multiply FLOPs of everything run inside (torch's FlopCounterMode cannot follow autograd.grad)."""

    flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **(kwargs or {}), out_val=out)
        return out


def touch(learner) -> None:
    """Fault in every page of every tensor the learner holds (zeros are lazily mapped until first written)."""
    with torch.no_grad():
        for t in tensors_in(learner.state()):
            if t.numel():
                t.view(-1)[::512].add_(0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device) -> float:
    """The rate of the step's typical product, a [500, 512] x [512, 512] fp32 matmul: the best of three
    rounds' medians, so that a busy moment of a shared machine does not set it."""
    a, b = torch.randn(500, 512, device=device), torch.randn(512, 512, device=device)
    rounds = []
    for _ in range(3):
        times = []
        for _ in range(40):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            times.append(time.perf_counter() - t0)
        rounds.append(float(np.median(times[5:])))
    return 2 * 500 * 512 * 512 / min(rounds) / 1e9


def timed_phases(learner) -> dict:
    """Wrap the learner contract's methods so that their time is recorded (for --profile)."""
    spent = {name: 0.0 for name in PHASES}

    def wrap(name):
        inner = getattr(learner, name)

        def timed(*args, **kwargs):
            sync(learner.device)
            t0 = time.perf_counter()
            out = inner(*args, **kwargs)
            sync(learner.device)
            spent[name] += time.perf_counter() - t0
            return out
        setattr(learner, name, timed)
    for name in PHASES:
        wrap(name)
    return spent


def measure(method: str, rows: int, variant: str, steps: int, warmup: int, device: str, dataset: str,
            profile: bool) -> dict:
    data = scattered_stream(dataset, rows)
    cfg = Config(method=method, progress=False, device=device, fast_path=variant != "plain")
    trainer = StreamingTrainer(data, cfg)
    if variant == "naive":
        trainer.learner = NaiveLearner(trainer.cfg, {"user": data.n_users, "item": data.n_items}, trainer.device,
                                       torch.float32)
    touch(trainer.learner)
    if warmup + 1 + steps > len(trainer.batches):
        raise SystemExit(f"{dataset} has only {len(trainer.batches)} batches; lower --steps")
    for index in range(warmup):
        trainer.step(index)
    with CountFlops() as counter:
        trainer.step(warmup)
    flops = counter.flops
    spent = timed_phases(trainer.learner) if profile else {}
    times = []
    for index in range(warmup + 1, warmup + 1 + steps):
        sync(trainer.device)
        t0 = time.perf_counter()
        trainer.step(index)
        sync(trainer.device)
        times.append(time.perf_counter() - t0)
    times = np.array(times) * 1e3
    median = float(np.median(times))
    record = {"method": method, "rows": rows, "variant": variant, "device": str(trainer.device),
              "samples_per_s": cfg.batch_size / median * 1e3, "ms_per_step_median": median,
              "ms_per_step_min": float(times.min()), "ms_per_step_max": float(times.max()),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "gflop_per_step": flops / 1e9, "threads": torch.get_num_threads(), "steps": steps}
    if device != "cpu" and trainer.device.type == "cuda":
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    if profile:
        total = times.sum()
        record["phases_ms"] = {PHASES[k]: v * 1e3 / steps for k, v in spent.items()}
        record["phases_ms"]["bookkeeping (view, popularity, records)"] = (total - sum(spent.values()) * 1e3) / steps
    return record


def run_one(args, method, rows, variant) -> dict:
    """One configuration in a fresh interpreter."""
    spec = dict(method=method, rows=rows, variant=variant, steps=args.naive_steps if variant == "naive" else args.steps,
                warmup=2 if variant == "naive" else args.warmup, device=args.device, dataset=args.dataset,
                profile=args.profile)
    command = [sys.executable, __file__, "--one", json.dumps(spec)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{method}/{rows}/{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(records: list[dict], gflops: float) -> str:
    head = (f"{'method':8} {'rows':>9} {'variant':7} {'samples/s':>10} {'ms/step med':>11} {'min':>7} {'max':>7} "
            f"{'RSS MiB':>8} {'GFLOP/step':>10} {'bound ms':>8} {'% bound':>7}")
    lines = [head, "-" * len(head)]
    for r in records:
        bound = r["gflop_per_step"] / gflops * 1e3
        lines.append(f"{r['method']:8} {r['rows']:>9,} {r['variant']:7} {r['samples_per_s']:>10,.0f} "
                     f"{r['ms_per_step_median']:>11.2f} {r['ms_per_step_min']:>7.2f} {r['ms_per_step_max']:>7.2f} "
                     f"{r['peak_rss_mb']:>8.0f} {r['gflop_per_step']:>10.3f} {bound:>8.2f} "
                     f"{100 * bound / r['ms_per_step_median']:>6.0f}%")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=["fse", "sam", "darts", "autoemb"])
    p.add_argument("--rows", nargs="+", type=int, default=[10_000, 1_000_000], help="rows per table side")
    p.add_argument("--steps", type=int, default=60, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--variants", nargs="+", default=["fast", "naive"], choices=["fast", "plain", "naive"])
    p.add_argument("--naive-steps", type=int, default=5)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    p.add_argument("--profile", action="store_true", help="also time the step's phases")
    p.add_argument("--json", type=Path, help="write the records here")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return
    gflops = matmul_gflops(torch.device(args.device))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}; "
          f"matmul [500,512]x[512,512]: {gflops:.0f} GFLOP/s", flush=True)
    records = []
    for method in args.methods:
        for rows in args.rows:
            for variant in args.variants:
                records.append(run_one(args, method, rows, variant))
                print(table(records[-1:], gflops).splitlines()[-1], flush=True)
    print()
    print(table(records, gflops))
    for r in records:
        if "phases_ms" in r:
            print(f"{r['method']}/{r['rows']:,}/{r['variant']}: " +
                  ", ".join(f"{k} {v:.2f} ms" for k, v in r["phases_ms"].items()))
    if args.json:
        from autoemb_core.atomic import write_json_atomic
        write_json_atomic(args.json, {"matmul_gflops": gflops, "torch": torch.__version__, "records": records})


if __name__ == "__main__":
    main()
