"""A grid of runs (cells) executed in this process, in a local process pool, or on a dask.distributed cluster.

Each cell is one :func:`~autoemb_core.train.run` with its own folder: its results under ``runs_dir/<name>/``
and, while it runs, its checkpoint under ``runs_dir/../checkpoints/<name>/``. A cell whose worker dies is
rescheduled by dask on another worker and resumes from that checkpoint (the folders must be on a filesystem
every worker sees); a cell whose results are already saved with the same settings is skipped; a cell that
fails is reported with its error while the others go on.

dask is imported only when a scheduler is given (``pip install -e .[distributed]``).
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import Config
from .interactions import DataError, Interactions
from .progress import Bar, in_kernel
from .train import RunResult, run


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: ``name`` is its folder's name, unique within the sweep."""

    name: str
    cfg: Config


def grid(base: Config, methods, tasks, seeds) -> list[Cell]:
    """Table 2's cells: every (task, method, seed) with ``base``'s other settings, named ``<task>-<method>-seed<seed>``."""
    return [Cell(f"{task}-{method}-seed{seed}", dataclasses.replace(base, task=task, method=method, seed=seed))
            for task in tasks for method in methods for seed in seeds]


@dataclass
class Outcome:
    """What a sweep produced: each finished cell's summary (and, in-process, its full result), each failed cell's
    error, and the names of the cells run this time (the others were reused)."""

    summaries: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    ran: list = field(default_factory=list)

    def result(self, cell: Cell, runs_dir) -> RunResult:
        """The cell's full result: kept in memory if it ran here, else loaded from its folder."""
        return self.results.get(cell.name) or RunResult.load(Path(runs_dir) / cell.name)

    def raise_failures(self, runs_dir=None) -> None:
        if self.failed:
            listed = "\n".join(f"  {name}: {error_line(error)}" for name, error in self.failed.items())
            kept = f"; the finished cells are saved under {runs_dir} and are reused when run again" if runs_dir else ""
            raise RuntimeError(f"{len(self.failed)} of the sweep's cells failed{kept}:\n{listed}")


def error_line(error: str) -> str:
    """A traceback's last exception, on one line (with its hint, for the project's own errors)."""
    lines = error.strip().splitlines()
    last = max((i for i, line in enumerate(lines) if line and not line[0].isspace()), default=0)
    return " ".join(line.strip() for line in lines[last:])


def checkpoint_dir(runs_dir, name: str) -> Path:
    """Where cell ``name`` keeps its checkpoint while it runs: beside ``runs_dir``, never inside a run's folder
    (a run's folder is replaced as a whole when its results are saved)."""
    return Path(runs_dir).parent / "checkpoints" / name


def run_cell(cfg: Config, folder: str | None, checkpoints: str | None, data: Interactions | None = None,
             keep: bool = False):
    """One cell, wherever it runs: its thread count applied (``cfg.threads``, or this worker's share of the
    cores), resumed from its checkpoint if one is there, its results saved into ``folder`` and its checkpoint
    then removed. Returns its summary, or its full result with ``keep``."""
    keep_checkpoints = cfg.checkpoint_dir or checkpoints
    cfg = dataclasses.replace(cfg, threads=cfg.threads or _worker_threads(), checkpoint_dir=keep_checkpoints,
                              resume=keep_checkpoints is not None)
    result = run(cfg, data)
    if folder is not None:
        result.save(folder)
        if checkpoints is not None:
            shutil.rmtree(checkpoints, ignore_errors=True)
    return result if keep else result.summary


def _worker_threads() -> int:
    """On a dask worker, its cores shared among its task slots (dask pins the math libraries to one thread);
    elsewhere, this process's torch threads."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, worker.state.nthreads))


def execute(cells, data: Interactions | None = None, runs_dir=None, scheduler: str | None = None, workers: int = 1,
            gpus_per_run: float = 0, reuse: bool = True, keep: bool = False, ship_data: bool = True,
            isolate: bool = False, log=sys.stderr) -> Outcome:
    """Run ``cells`` and return their :class:`Outcome`.

    - ``scheduler=None, workers=1``: one after another in this process, as a plain loop would;
    - ``scheduler=None, workers>1`` (or ``isolate``): ``workers`` at a time, each in its own spawned process;
    - ``scheduler="local"``: a dask ``LocalCluster`` of ``workers`` processes, one cell at a time each;
    - ``scheduler="tcp://HOST:PORT"``: the dask cluster there.

    ``data`` is used to check for saved cells; it is sent to the workers when ``ship_data`` (otherwise each cell
    loads its dataset from its config, which is faster on a cluster with a shared filesystem). ``gpus_per_run``
    reserves that much of the workers' ``GPU`` resource per cell (0.5: two cells share a GPU) and runs on cuda.
    With ``keep``, in-process results are kept in memory. Unless the cells run one by one here (each with its
    own progress bar), a bar over the cells and a line per finished cell go to ``log``."""
    cells = list(cells)
    if not 0 <= gpus_per_run <= 1:
        raise DataError(f"gpus_per_run={gpus_per_run!r}: a run uses one GPU at most",
                        hint="use 1 (a GPU per cell), a fraction such as 0.5 (cells share a GPU), or 0 (CPU)")
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise DataError(f"a sweep's cells need distinct names, got duplicates in {names}")
    if gpus_per_run:
        cells = [dataclasses.replace(c, cfg=dataclasses.replace(c.cfg, device="cuda")) for c in cells]
    outcome, todo = Outcome(), []
    for cell in cells:
        saved = RunResult.saved(Path(runs_dir) / cell.name, cell.cfg, _stream(cell.cfg, data)) \
            if reuse and runs_dir is not None and data is not None else None
        if saved is not None:
            outcome.summaries[cell.name] = saved.summary
            if keep:
                outcome.results[cell.name] = saved
        else:
            todo.append(cell)
    # One by one here, each run shows its own progress, as a plain loop's would; in a kernel that is its lines only,
    # under this bar (progress.Bar: one widget per run would flood the kernel's messages)
    inline = scheduler is None and workers <= 1 and not isolate
    bar = Bar(len(cells), "sweep", "cell", initial=len(cells) - len(todo), log=False, file=log, widget=False,
              disable=log is None or not todo or (inline and not in_kernel()))
    counts = {"running": 0, "done": 0, "failed": 0, "reused": len(cells) - len(todo)}

    def finished(cell: Cell, value=None, error: str | None = None) -> None:
        if error is None:
            summary = value.summary if isinstance(value, RunResult) else value
            outcome.summaries[cell.name] = summary
            if isinstance(value, RunResult):
                outcome.results[cell.name] = value
            outcome.ran.append(cell.name)
            counts["done"] += 1
            line = (f"{cell.name}: online loss {summary['online_loss']:.4f}, {summary['seconds']:.0f} s"
                    + (f", resumed from batch {summary['resumed_from_batch']}" if summary.get("resumed_from_batch") else ""))
        else:
            outcome.failed[cell.name] = error
            counts["failed"] += 1
            line = f"{cell.name} FAILED: {error_line(error)}"
        bar.update(1)
        bar.set_postfix(**counts)
        if not bar.disable:
            bar.write(line)

    jobs = [(cell, None if runs_dir is None else str(Path(runs_dir) / cell.name),
             None if runs_dir is None else str(checkpoint_dir(runs_dir, cell.name))) for cell in todo]
    if jobs and inline:
        for cell, folder, checkpoints in jobs:
            try:
                finished(cell, run_cell(cell.cfg, folder, checkpoints, data, keep=keep))
            except Exception:  # one failed cell is reported, the others go on
                finished(cell, error=traceback.format_exc())
    elif jobs and scheduler is None:
        _in_pool(jobs, data, max(1, workers), finished, counts, bar, runs_dir)
    elif jobs:
        _on_dask(jobs, data if ship_data else None, scheduler, workers, gpus_per_run, finished, counts, bar)
    bar.set_postfix(**counts)
    bar.close()
    return outcome


def _stream(cfg: Config, data: Interactions) -> Interactions:
    return data.head(cfg.max_interactions) if cfg.max_interactions else data


def _in_pool(jobs, data, workers, finished, counts, bar, runs_dir) -> None:
    """``workers`` cells at a time, each in its own spawned process with an equal share of this one's threads
    (its ``peak_rss_bytes`` is its own)."""
    threads = max(1, torch.get_num_threads() // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_cell, dataclasses.replace(cell.cfg, threads=cell.cfg.threads or threads,
                                                             progress=False), folder, checkpoints, data): cell
                   for cell, folder, checkpoints in jobs}
        pending = set(futures)
        while pending:
            counts["running"] = min(workers, len(pending))
            bar.set_postfix(refresh=True, **counts)
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    finished(futures[future], future.result())
                except BrokenProcessPool:
                    raise RuntimeError(f"the process running {futures[future].name} ended abruptly (killed, or out "
                                       f"of memory?); the finished cells are saved under {runs_dir} and are reused "
                                       "when run again") from None
                except Exception:
                    finished(futures[future], error=traceback.format_exc())
        counts["running"] = 0


def _on_dask(jobs, data, scheduler, workers, gpus_per_run, finished, counts, bar) -> None:
    """The cells on a dask cluster: started here for ``"local"``, else the one at the address."""
    try:
        from distributed import Client, LocalCluster
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise DataError(f"scheduler={scheduler!r} needs dask.distributed, which is not installed",
                        hint="pip install -e '.[distributed]', or run without a scheduler (in-process)") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, resources={"GPU": 1} if gpus_per_run else None)
        address = cluster.scheduler_address
    elif str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        address = scheduler
    else:
        raise DataError(f"scheduler={scheduler!r} is neither 'local' nor a dask address",
                        hint="use local, or tcp://HOST:PORT (the address `dask scheduler` prints)")
    try:
        try:
            client = Client(address, timeout="20s")
        except OSError as exc:
            raise DataError(f"cannot reach the dask scheduler at {address} ({exc})",
                            hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                                 "or use scheduler local") from None
        with client:
            if gpus_per_run:
                _check_gpus(client, gpus_per_run)
            shared = client.scatter(data, broadcast=True) if data is not None else None
            resources = {"GPU": gpus_per_run} if gpus_per_run else None
            futures = {client.submit(run_cell, dataclasses.replace(cell.cfg, progress=False), folder, checkpoints,
                                     shared, key=f"autoemb-{cell.name}-{time.time_ns()}", pure=False,
                                     resources=resources): cell
                       for cell, folder, checkpoints in jobs}
            pending, last = set(futures), 0.0
            while pending:
                if time.monotonic() - last >= 1.0:  # how many run now: the scheduler's view, once a second
                    keys = {f.key for f in pending}
                    counts["running"] = sum(k in keys for tasks in client.processing().values() for k in tasks)
                    bar.set_postfix(refresh=True, **counts)
                    last = time.monotonic()
                done = {f for f in pending if f.done()}
                pending -= done
                for future in done:
                    cell = futures[future]
                    if future.status == "finished":
                        finished(cell, future.result())
                        continue
                    exc = future.exception()
                    finished(cell, error=f"every worker that ran it died (killed, or out of memory?): {exc}"
                             if isinstance(exc, KilledWorker) else
                             "".join(traceback.format_exception(type(exc), exc, future.traceback())))
                if not done:
                    time.sleep(0.1)
            counts["running"] = 0
    finally:
        if cluster is not None:
            cluster.close()



def _check_gpus(client, gpus_per_run: float) -> None:
    """Cells that ask for a GPU wait forever on a cluster without one: refuse them up front."""
    slots = [w.get("resources", {}).get("GPU", 0) for w in client.scheduler_info()["workers"].values()]
    if max(slots, default=0) < gpus_per_run:
        raise DataError(f"gpus_per_run={gpus_per_run} but no worker of {client.scheduler.address} offers that much "
                        f"GPU resource (workers' GPU: {slots})",
                        hint="start the workers with `dask worker ADDRESS --resources GPU=1`, or with dask-cuda's "
                             "`dask cuda worker ADDRESS --resources GPU=1`")
