"""The tuning protocol: each method's settings chosen on a stream's offline stage, never on what is reported.

One study per (task, method): Optuna's TPE sampler, seeded by the method and task, draws from the method's space
in the method table (:data:`autoemb_core.methods.TABLE`), the same number of trials for every method, the
method's current settings first. A trial streams the offline stage as a run does (every batch predicted before it
is learned); its score is the prequential loss over that stage. At its halfway point a trial that is worse than
three quarters of the trials before it is pruned, and so is a trial that runs :data:`TIME_CAP` times as long as
the first, and over :data:`TIME_FLOOR` seconds, in CPU time (the budget is trials of bounded cost, one rule for every method). The studies live in Optuna journal files in the results folder:
a tuning killed part way resumes without repeating a finished trial, and a finished study is reused.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .atomic import atomic_write
from .config import TUNE_TRIALS, Config
from .interactions import DataError, Interactions
from .methods import TABLE, Choice
from .regimes import REGIMES

TRIALS = TUNE_TRIALS  # the default budget: finished trials per method and task
PRUNE_PERCENTILE = 75.0  # pruned at half time when worse than this share of the trials before it
TIME_CAP = 8.0  # a trial is stopped (pruned) once it has run this many times as long as the first, the defaults'
# (and at least TIME_FLOOR seconds): one micro-batch per sample costs 19 (AutoEmb) to 200 (MF) times the whole
# batch (benchmarks/learning_cost.md)
TIME_FLOOR = 120.0
STARTUP_TRIALS = 4  # trials that always run to the end before any is pruned
EDGE = 0.02  # a chosen value within this share of its log range from an end sits on the edge


def space(method: str, regime: str | None = None) -> dict:
    """The method's tuning space from the method table ({} where it has no setting, or is not tuned), with the
    architecture settings a regime has the protocol choose for the AutoEmb architecture's methods."""
    extra = REGIMES[regime].architecture if regime is not None and TABLE[method].family == "selecting" else {}
    return {**(TABLE[method].space or {}), **extra} if TABLE[method].space is not None else {}


def needs_tuning(cfg: Config, method: str, task: str) -> bool:
    """A method with settings to tune and no tuned values for ``task`` (its own or those of ``tuned_as``), in a
    regime that is tuned."""
    spec = TABLE[method]
    if cfg.regime is not None and not REGIMES[cfg.regime].tuned and spec.learner == "embedding":
        return False  # a fixed setup (the paper's, ESAPN's): never tuned
    block = cfg.tuned.get(task, {})
    chosen = set(space(method, cfg.regime)) - set(space(method))  # the architecture this regime has tuning choose
    if chosen:
        return not chosen <= set(block.get(method, block.get(spec.tuned_as, {})))
    return bool(spec.space) and method not in block and (spec.tuned_as is None or spec.tuned_as not in block)


def tuning_stream(data: Interactions, cfg: Config) -> Interactions:
    """The offline stage of ``data`` (its first ``cfg.tune_interactions`` only, where set): all a trial ever sees."""
    offline = int(round(len(data) * cfg.offline_fraction))
    return data.head(min(offline, cfg.tune_interactions or offline))


def suggest(trial, key: str, spec, spaces: int) -> object:
    """One setting's value for ``trial``: log-uniform in a (lo, hi) range, one of a :class:`Choice`, or for
    ``popularity_thresholds`` (one fewer than ``spaces``) a first threshold and an integer ratio to the next."""
    import optuna  # noqa: F401
    if isinstance(spec, Choice):
        return trial.suggest_categorical(key, list(spec.values))
    if key == "popularity_thresholds":
        return thresholds(trial.suggest_int("first_threshold", *spec[0], log=True),
                          trial.suggest_int("threshold_ratio", *spec[1], log=True), spaces)
    return trial.suggest_float(key, *spec, log=True)


def thresholds(first: int, ratio: int, spaces: int) -> list[int]:
    """The popularity rule's ``spaces - 1`` thresholds: ``first``, then each ``ratio`` times the one before."""
    return [first * ratio ** k for k in range(spaces - 1)]


def current(cfg: Config, key: str):
    """The setting's value in ``cfg`` as a trial of the space would give it (the first, enqueued trial)."""
    if key == "popularity_thresholds":
        t = cfg.rule_thresholds
        return {"first_threshold": t[0], "threshold_ratio": max(2, t[1] // t[0]) if len(t) > 1 else 2}
    return {key: getattr(cfg, key)}


def nested_start(cfg: Config, method: str, task: str) -> dict | None:
    """The trial at which ``method`` is, nearly, the method it nests at that method's tuned values (``cfg.tuned``):
    the shared settings at those values, its own at the low ends of their ranges (MF: factors drawn and moved at
    1e-5, no L2: the biases' scores to 1e-5). Without it, 16 trials over MF's 8 settings ended worse than the biases on
    ml-100k classification (1.3925 against 1.3911 offline), a richer model losing for want of trials. None where
    ``method`` nests nothing or the nested method has no tuned values for ``task``."""
    nested = TABLE[method].nests
    values = cfg.tuned.get(task, {}).get(nested) if nested else None
    if not values:
        return None
    own = {key: min(v for v in spec.values if v is not None) if isinstance(spec, Choice) else spec[0]
           for key, spec in space(method, cfg.regime).items() if key not in values}
    return {**own, **as_params(cfg, values, space(method, cfg.regime))}


def as_params(cfg: Config, values: dict, keys) -> dict:
    """``values`` (settings) of ``keys`` as the params of a trial (:func:`current` of ``cfg`` at each value)."""
    return {k: v for key in keys if key in values
            for k, v in current(dataclasses.replace(cfg, **{key: values[key]}), key).items()}


def architecture_starts(cfg: Config, method: str, task: str) -> list[dict]:
    """In a regime whose tuning also chooses the architecture (competent): every variant (each combination of its
    choices) at the values ``method`` has in ``cfg.tuned`` (the ``tuned`` regime's), so that each variant is
    scored at rates known to work before TPE draws. Without them, 16 trials over AutoEmb's 7 settings on ml-100k
    kept bn-tanh (0.21800), never scoring tanh or linear where, at the tuned rates, they beat it (0.2099-0.2102
    against 0.2118 online). [] where the regime chooses no architecture or the method has no tuned values."""
    import itertools
    extra = {k: v for k, v in space(method, cfg.regime).items() if k not in space(method)}
    values = cfg.tuned.get(task, {}).get(method)
    if not extra or not values:
        return []
    rates = {**{k: v for key in space(method) for k, v in current(cfg, key).items()},
             **as_params(cfg, values, space(method))}
    return [{**rates, **dict(zip(extra, combo))} for combo in itertools.product(*(c.values for c in extra.values()))]


def first_points(cfg: Config, method: str, task: str) -> list[dict]:
    """A new study's first trials, each unless already listed: the current settings, then the nested method's
    tuned point (:func:`nested_start`), then each architecture variant at the tuned values
    (:func:`architecture_starts`). They count against the budget as any trial does."""
    points = [{k: v for key in space(method, cfg.regime) for k, v in current(cfg, key).items()}]
    for point in [nested_start(cfg, method, task), *architecture_starts(cfg, method, task)]:
        if point is not None and point not in points:
            points.append(point)
    return points


def values_of(params: dict, keys, spaces: int) -> dict:
    """A trial's params as settings (the thresholds' two params become ``popularity_thresholds``)."""
    out = {k: v for k, v in params.items() if k in keys}
    if "first_threshold" in params:
        out["popularity_thresholds"] = thresholds(params["first_threshold"], params["threshold_ratio"], spaces)
    return {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in out.items()}


def on_edge(values: dict, method: str) -> list[str]:
    """The chosen rates that sit on an end of their log range, and the chosen values that are the largest of a
    grid of numbers (train_passes, mf's embedding_l2; not a grid that ends in None, the whole batch, nor its lower
    end, 0 or 1, below which there is nothing): the range was wrong, widen it."""
    found = []
    for key, spec in space(method).items():
        if key == "popularity_thresholds" or key not in values:
            continue
        if isinstance(spec, Choice):
            if None not in spec.values and len(spec.values) > 1 and values[key] == max(spec.values):
                found.append(f"{method}.{key} = {values[key]:g} is the largest of its choices {list(spec.values)}")
            continue
        lo, hi = (math.log(x) for x in spec)
        at = (math.log(values[key]) - lo) / (hi - lo)
        if at <= EDGE or at >= 1 - EDGE:
            found.append(f"{method}.{key} = {values[key]:g} is on the {'lower' if at <= EDGE else 'upper'} edge "
                         f"of its range {spec[0]:g}..{spec[1]:g}")
    return found


def journal(path: Path, repair: bool = True):
    """Optuna's journal file storage at ``path``, repaired first (``repair``: by the process that opens a tuning,
    before its workers): a line cut short by a killed process is dropped, and the lock it left behind removed."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
    path.parent.mkdir(parents=True, exist_ok=True)
    if repair and path.is_file():
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(text.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())
    lock = Path(f"{path}.lock")
    if repair and (lock.exists() or lock.is_symlink()):
        lock.unlink()
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def study_name(cfg: Config, method: str, task: str) -> str:
    """``<task>-<method>``, and the regime's name where it adds architecture settings (a study of its own)."""
    return f"{task}-{method}" + (f"-{cfg.regime}" if len(space(method, cfg.regime)) > len(space(method)) else "")


def tune_method(base: Config, data: Interactions, method: str, task: str, trials: int, folder: Path,
                log=None, workers: int = 1) -> dict:
    """Run (or resume, or reuse) the study of ``method`` on ``task``: ``trials`` finished trials in all, ``workers``
    processes at a time on the same journal (each with its share of the threads and its own sampler seed).
    Returns {"values", "score", "trials", "pruned", "seconds", "edges"}; ``data`` is the tuning stream."""
    import optuna
    log = log or sys.stderr
    cfg = dataclasses.replace(base, task=task, method=method, progress=False, checkpoint_dir=None, resume=False)
    keys, name = space(method, cfg.regime), study_name(cfg, method, task)
    study = _study(cfg, name, folder, 0, repair=True)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    if all(t.state == optuna.trial.TrialState.FAIL for t in study.trials):  # a new study
        study.set_user_attr("interactions", len(data))
        for point in first_points(cfg, method, task):
            study.enqueue_trial(point)
    elif study.user_attrs.get("interactions", len(data)) != len(data):
        raise DataError(f"the study {name} was tuned on {study.user_attrs['interactions']:,} interactions, and this "
                        f"tuning's stream has {len(data):,}", folder / f"{name}.journal",
                        hint="give the same --tune-interactions (and stream) as before, or another --results-dir")
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # killed part way:
        study.enqueue_trial(trial.system_attrs.get("fixed_params") or trial.params)  # its point runs again
    done = len(study.get_trials(deepcopy=False, states=finished))
    if done < trials:
        workers = max(1, min(workers, trials - done))
        print(f"tuning {method} ({task}) on {len(data):,} offline interactions: {trials - done} of {trials} trials "
              f"to go" + (f", {workers} at a time" if workers > 1 else ""), file=log, flush=True)
        if workers == 1:
            optimize(cfg, data, name, folder, trials, 0)
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for future in [pool.submit(optimize, cfg, data, name, folder, trials, w, workers) for w in range(workers)]:
                    future.result()
        study = _study(cfg, name, folder, 0)
    ended = study.get_trials(deepcopy=False, states=finished)
    complete = [t for t in ended if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    values = values_of(best.params, keys, len(cfg.dims))
    write_trials(study, folder / f"{name}.csv")
    return {"values": values, "score": float(best.value), "trials": len(ended),
            "pruned": len(ended) - len(complete), "seconds": float(sum(t.user_attrs.get("seconds", 0) for t in ended)),
            "edges": on_edge(values, method)}


def _study(cfg: Config, name: str, folder: Path, worker: int, repair: bool = False):
    """The study in its journal (``repair``: first repaired, by the process that opens the tuning), with worker
    ``worker``'s sampler (seeded by task, method and worker)."""
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", "Fixed parameter .* is out of range", UserWarning)  # the current settings
    seed = int(hashlib.sha256(f"{cfg.task}/{cfg.method}".encode()).hexdigest()[:8], 16) + worker
    study = optuna.create_study(study_name=name, storage=journal(folder / f"{name}.journal", repair=repair),
                                direction="minimize", load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.PercentilePruner(PRUNE_PERCENTILE, STARTUP_TRIALS))
    state = optuna.trial.TrialState
    ended = len(study.get_trials(deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.FAIL)))
    if ended:  # a resumed study: a sampler seeded as at its start would draw again the points it drew then
        study.sampler = optuna.samplers.TPESampler(seed=seed + 7919 * ended)
    return study


class _Spare(Exception):
    """A worker's trial that would take the study past its budget: it ends unrun (failed, and not counted)."""


def optimize(cfg: Config, data: Interactions, name: str, folder: Path, trials: int, worker: int = 0,
             workers: int = 1) -> None:
    """One worker's share of the study: trials until ``trials`` are finished or running in all."""
    import optuna
    import torch

    from .train import NumericsError, StreamingTrainer
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    study = _study(cfg, name, folder, worker)
    keys = space(cfg.method, cfg.regime)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)

    def objective(trial) -> float:
        began = time.perf_counter()
        others = [t for t in study.get_trials(deepcopy=False, states=(*finished, optuna.trial.TrialState.RUNNING))
                  if t.number != trial.number]
        if len(others) >= trials:
            raise _Spare
        values = {key: suggest(trial, key, spec, len(cfg.dims)) for key, spec in keys.items()}
        trainer = StreamingTrainer(data, Config.from_dict({**cfg.to_dict(), **values, "tuned": {}}))
        half, total, size = len(trainer.batches) // 2, 0.0, 0
        first = [t for t in study.get_trials(deepcopy=False) if t.number == 0 and t.value is not None]
        cap = max(TIME_CAP * first[0].user_attrs.get("cpu_seconds", math.inf), TIME_FLOOR) if first else math.inf
        cpu = time.process_time()  # CPU time, not wall time: a busy machine must not prune a trial
        try:
            for index in range(len(trainer.batches)):
                loss = trainer.step(index).loss
                total, size = total + float(loss.sum()), size + len(loss)
                if time.process_time() - cpu > cap:
                    trial.set_user_attr("slow", True)
                    raise optuna.TrialPruned()
                if index + 1 == half:
                    trial.report(total / size, index)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        except NumericsError:  # a rate that diverges is as bad as a trial can be
            trial.set_user_attr("diverged", True)
            raise optuna.TrialPruned() from None
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - began)
            trial.set_user_attr("cpu_seconds", time.process_time() - cpu)
        return total / size

    def budgeted(study, trial) -> None:  # finished, or running in another worker: no further trial is needed
        if len(study.get_trials(deepcopy=False, states=(*finished, optuna.trial.TrialState.RUNNING))) >= trials:
            study.stop()

    study.optimize(objective, callbacks=[budgeted], catch=(_Spare,), gc_after_trial=False)


def write_trials(study, path: Path) -> None:
    """Every trial of ``study``: its number, state, params, score and seconds (atomically)."""
    frame = pd.DataFrame([{"trial": t.number, "state": t.state.name, **t.params, "score": t.value,
                           "seconds": t.user_attrs.get("seconds", np.nan)} for t in study.trials])
    with atomic_write(path, "w") as f:
        frame.to_csv(f, index=False)


def ensure_tuned(base: Config, data: Interactions | None, methods, tasks, trials: int, folder,
                 log=None, workers: int = 1) -> Config:
    """``base`` with tuned values for every (task, method) that has none: each tuned by the protocol on
    ``data``'s offline stage (None: ``base``'s dataset, loaded only if something needs tuning), within ``trials``
    trials (``workers`` at a time), in ``folder/tuning/``; the chosen values also go to ``folder/tuned.yaml`` (never to ``params/``).
    ``trials`` 0: nothing is tuned."""
    log = log or sys.stderr
    todo = [(task, m) for task in tasks for m in dict.fromkeys(methods) if trials and needs_tuning(base, m, task)]
    if not todo:
        return base
    if data is None:
        from .data import load_dataset
        data = load_dataset(base.dataset, base.data_dir, max_interactions=base.max_interactions)
    folder = Path(folder)
    stream = tuning_stream(data, base)
    chosen = {}
    for task, method in todo:  # in the order given, so that a nested method's values are there first (nested_start)
        chosen.setdefault(task, {})[method] = tune_method(with_chosen(base, chosen), stream, method, task, trials,
                                                          folder / "tuning", log, workers)
    tuned = with_chosen(base, chosen).tuned
    write_tuned_yaml(folder / "tuned.yaml", chosen, stream, trials)
    edges = [e for by in chosen.values() for r in by.values() for e in r["edges"]]
    print(f"tuned {len(todo)} method(s) on the offline stage of {data.name} ({trials} trials each); the values are "
          f"in {folder / 'tuned.yaml'}, not in params/" + "".join(f"\nwarning: {e}: widen it" for e in edges),
          file=log, flush=True)
    return dataclasses.replace(base, tuned=tuned)


def with_chosen(base: Config, chosen: dict) -> Config:
    """``base`` with the values of ``chosen`` ({task: {method: tune_method's result}}) over its tuned block."""
    return dataclasses.replace(base, tuned={
        task: {**base.tuned.get(task, {}), **{m: r["values"] for m, r in chosen.get(task, {}).items()}}
        for task in {**base.tuned, **chosen}})


def write_tuned_yaml(path: Path, chosen: dict, stream: Interactions, trials: int) -> None:
    """The tuned block (usable as ``--params``), with the tuning ``stream`` (how many interactions), and each
    study's score, trials, pruned trials and seconds."""
    lines = [f"# chosen by the tuning protocol (autoemb_core.tuning) on the offline stage of {stream.name} (the "
             f"{len(stream):,} interactions it tuned on): Optuna TPE, {trials} trials per method, pruned at half time"]
    for task, by in chosen.items():
        for method, r in by.items():
            lines.append(f"# {task}/{method}: prequential loss {r['score']:.5f}, {r['trials']} trials "
                         f"({r['pruned']} pruned), {r['seconds']:.0f} s" + "".join(f"; {e}" for e in r["edges"]))
    block = {"tuned": {task: {m: r["values"] for m, r in by.items()} for task, by in chosen.items()}}
    with atomic_write(path, "w") as f:
        f.write("\n".join(lines) + "\n" + yaml.safe_dump(block, sort_keys=True, default_flow_style=None, width=110))


def describe(tuned: list, trials: int, folder, data: Interactions, cfg: Config) -> str:
    """One line for a report: which (task, method) pairs were tuned here, on what, with what budget and time
    (from ``folder/tuning``), or which ran untuned."""
    if not tuned:
        return ("Tuning: none was tuned here; every method ran with the tuned values it was given (its params file's, "
                "or in a regimes report an earlier regime's `tuned.yaml`).")
    pairs = ", ".join(f"{m} ({t})" for t, m in tuned)
    if not trials:
        return f"**Untuned** (`--no-tune`): {pairs} had no tuned values and ran at the package defaults."
    files = [Path(folder, "tuning", f"{study_name(cfg, m, t)}.csv") for t, m in tuned]
    seconds = sum(float(pd.read_csv(f)["seconds"].fillna(0).sum()) for f in files if f.is_file())
    return (f"Tuning: {pairs} had no tuned values, so each was tuned first on the offline stage of {data.name} "
            f"(its first {len(tuning_stream(data, cfg)):,} interactions; the online stage "
            f"reported here was never seen), {trials} trials each, {seconds / 60:.1f} min in all; the values are in "
            "`tuned.yaml` (not in params/), the trials in `tuning/`.")
