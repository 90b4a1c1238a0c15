"""The stream: one learner, evaluate-then-train over chronological mini-batches (paper §2.5, Algorithm 1).

Every method is a learner (:mod:`autoemb_core.learner`); this module knows only its contract. Per batch
(:meth:`StreamingTrainer.step`):

1. draw a validation batch from past interactions;
2. ``theta_step``: Theta descends grad_Theta L_val(W', Theta), W' unrolling W's step on the batch W last trained
   on (the new batch is not seen before it is predicted);
3. ``route``: hard selection stores the batch's ids in their chosen spaces;
4. ``predict`` the batch and record its metrics;
5. ``learn``: W trains on the batch, and the per-id context records it.

Then progress, checkpoints, the results and the summary (:meth:`StreamingTrainer.run`).
"""
from __future__ import annotations

import ctypes
import dataclasses
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import checkpoint
from .atomic import atomic_folder, atomic_write, write_json_atomic
from .config import Config
from .data import load_dataset
from .interactions import ClearError, Interactions
from .learner import EmbeddingLearner, Learner, NonFinite
from .model import SIDES, loss_and_correct
from .progress import Bar
from .reference import MF, Biases, Means
from .stream import Stream, View, holdout_mask, make_batches, microbatches, sample_validation

LEARNERS = {"embedding": EmbeddingLearner, "means": Means, "biases": Biases, "mf": MF}  # the method table's ``learner``


@dataclass
class Step:
    """One processed batch: its view, the ids' popularity before it, per-sample loss and correctness, the
    selection weights per unique id, and the second-order share of Theta's hypergradient (NaN: no step)."""

    view: View
    popularity: dict
    loss: torch.Tensor
    correct: torch.Tensor
    weights: dict
    second_order_ratio: float = float("nan")

    def alpha_records(self, index: int, seen: int, dims) -> pd.DataFrame:
        frames = []
        for s in SIDES:
            record = {"batch": index, "seen": seen, "side": s, "id": self.view.ids[s].cpu().numpy(),
                      "popularity": self.popularity[s].cpu().numpy()}
            for n, d in enumerate(dims):
                record[f"w{d}"] = self.weights[s][:, n].float().cpu().numpy()
            frames.append(pd.DataFrame(record))
        return pd.concat(frames, ignore_index=True)


@dataclass
class RunResult:
    """What a run produced: per-batch metrics, per-sample online records, selection weights, summary."""

    config: dict
    summary: dict
    batches: pd.DataFrame
    samples: pd.DataFrame
    alphas: pd.DataFrame = field(default_factory=pd.DataFrame)

    def save(self, folder) -> Path:
        """Write summary.json, batches.csv, samples.parquet and alphas.parquet into ``folder``, replacing a
        previous run's files as one set: a failed write (a full disk) leaves the previous set whole."""
        folder = Path(folder)
        with atomic_folder(folder) as stage:
            for name, frame in (("samples.parquet", self.samples), ("alphas.parquet", self.alphas)):
                with atomic_write(stage / name) as f:
                    frame.to_parquet(f, index=False)
            with atomic_write(stage / "batches.csv", "w") as f:
                self.batches.to_csv(f, index=False)
            write_json_atomic(stage / "summary.json", self.summary)
        return folder

    @classmethod
    def load(cls, folder) -> "RunResult":
        """A run saved by :meth:`save`."""
        folder = Path(folder)
        summary = json.loads((folder / "summary.json").read_text())
        return cls(summary["config"], summary, pd.read_csv(folder / "batches.csv"),
                   pd.read_parquet(folder / "samples.parquet"), pd.read_parquet(folder / "alphas.parquet"))

    @classmethod
    def saved(cls, folder, cfg: Config, data: Interactions) -> "RunResult | None":
        """The run saved in ``folder`` if it is ``cfg``'s run on ``data`` (every setting that changes what a
        run computes, the dataset and its size equal), else None."""
        path = Path(folder) / "summary.json"
        if not path.is_file():
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        same = (summary.get("dataset") == data.name and summary.get("n_interactions") == len(data)
                and not cfg.resolved().differences(summary.get("config", {})))
        return cls.load(folder) if same else None


class NumericsError(ClearError, RuntimeError):
    """A loss or gradient went NaN or infinite; the run stopped before applying it."""


@dataclass
class Progress:
    """Where a run stands: the next batch, the metrics so far and the time spent; saved in checkpoints."""

    rows: list  # one tuple per batch done, in order, the columns of RunResult.batches
    online: dict  # column -> array over the online stage, filled up to the batches done
    alphas: list  # DataFrames of recorded selection weights
    seconds: float = 0.0

    COLUMNS = (("user_popularity", np.int64), ("item_popularity", np.int64), ("loss", np.float32), ("correct", bool))

    @classmethod
    def start(cls, n_online: int) -> "Progress":
        return cls([], {k: np.empty(n_online, dtype=t) for k, t in cls.COLUMNS}, [])

    @property
    def next_batch(self) -> int:
        return len(self.rows)

    def online_done(self) -> int:
        return sum(row[3] for row in self.rows if row[1] == "online")

    def state(self) -> dict:
        done = self.online_done()
        alphas = checkpoint.frame_bytes(pd.concat(self.alphas, ignore_index=True)) if self.alphas else None
        return {"next_batch": self.next_batch, "rows": list(self.rows), "seconds": self.seconds, "alphas": alphas,
                "online": {k: torch.from_numpy(v[:done].copy()) for k, v in self.online.items()}}

    @classmethod
    def from_state(cls, state: dict, n_online: int) -> "Progress":
        progress = cls.start(n_online)
        progress.rows, progress.seconds = list(state["rows"]), state["seconds"]
        for k, v in state["online"].items():
            progress.online[k][:len(v)] = v.cpu().numpy()
        progress.alphas = [] if state["alphas"] is None else [checkpoint.bytes_frame(state["alphas"])]
        return progress


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> None:
    """Let glibc keep a step's freed temporaries for the next step instead of returning them to the kernel.

    By default blocks above its (adaptive) mmap threshold are unmapped when freed, so every step maps and
    zero-fills its temporaries again: about 1,000 page faults a step, 20% of an FSE step, and more with large
    tables (measured in benchmarks/README.md). Blocks up to 64 MiB now come from the heap, which keeps up to
    256 MiB free at its top. Tables and datasets, larger, are still mapped and unmapped. No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no CUDA device; use device='cpu' or 'auto'")
    return torch.device(name)


def make_learner(cfg: Config, data: Interactions, device, dtype=torch.float32) -> Learner:
    """``cfg.method``'s learner for ``data``'s ids, its parameters drawn from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return LEARNERS[cfg.spec.learner](cfg, {"user": data.n_users, "item": data.n_items}, device, dtype)


class StreamingTrainer:
    """One run: a learner streamed through a dataset, with the validation draws, checkpoints and results;
    ``cfg`` is resolved first: its tuned values for this task and method apply."""

    def __init__(self, data: Interactions, cfg: Config, dtype: torch.dtype = torch.float32):
        cfg = cfg.resolved()
        self.cfg, self.data = cfg, data
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.fast_path:
            keep_freed_memory()
        self.learner = make_learner(cfg, data, self.device, dtype)
        self.rng = np.random.default_rng(cfg.seed)  # the validation draws
        self.stream = Stream(data, cfg.task, self.device, dtype)
        self.batches = make_batches(len(data), cfg.batch_size, cfg.offline_fraction)
        self.held = holdout_mask(len(data), cfg.holdout, cfg.seed)  # positions W never trains on
        self.held_positions = np.flatnonzero(self.held)
        self.previous: torch.Tensor | None = None  # positions W last trained on
        self.saved_after: int | None = None  # the batch after which the last checkpoint was written
        self.resumed_from: int | None = None  # the batch a resumed run continued from
        self._fingerprint = None

    def step(self, index: int) -> Step:
        """Algorithm 1 for batch ``index``. With ``validation: incoming`` Theta's validation batch is the batch
        itself, once it has been predicted and before W trains on it. With a held-out share the whole batch is
        predicted and scored, and W trains on the rest. W learns the batch in ``train_passes`` passes of
        ``train_microbatch`` chunks; Theta stays at one step per batch, and its unrolled step's L_train is the
        samples of W's last step (the previous batch's last micro-batch, the whole batch by default)."""
        cfg, learner, stream = self.cfg, self.learner, self.stream
        start, stop = int(self.batches.start[index]), int(self.batches.stop[index])
        try:
            ratio, incoming = float("nan"), cfg.validation == "incoming"
            trained = self.previous is not None and len(self.previous) > 0
            if learner.uses_validation and not incoming:
                validation = sample_validation(self.rng, self.batches, index, cfg.validation_size or cfg.batch_size,
                                               cfg.validation, self.held_positions)
                if len(validation) and trained:
                    ratio = learner.theta_step(stream.view(self.previous),
                                               stream.view(torch.as_tensor(validation, device=self.device)))
            view = stream.view(slice(start, stop))
            learner.route(view)
            popularity = learner.popularity(view)
            logits, weights = learner.predict(view)
            loss, correct = loss_and_correct(logits, view.target, cfg.task)
            learner.guard("prediction loss", [loss])
            if learner.uses_validation and incoming and trained:
                ratio = learner.theta_step(stream.view(self.previous), view)
            keep = torch.as_tensor(~self.held[start:stop], device=self.device) if cfg.holdout else None
            learner.learn(view, keep)
        except NonFinite as error:
            raise NumericsError(self._numerics_message(error.what, index, start, stop)) from None
        positions = torch.arange(start, stop, device=self.device)
        learned = positions if keep is None else positions[keep]
        self.previous = learned[microbatches(len(learned), cfg.train_microbatch)[-1][0]:]  # W's last step's samples
        return Step(view, popularity, loss, correct, weights, ratio)

    def _numerics_message(self, what: str, index: int, start: int, stop: int) -> str:
        cfg = self.cfg
        kept = (f"The last good checkpoint (after batch {self.saved_after}) is kept in {cfg.checkpoint_dir}."
                if self.saved_after is not None else
                "No checkpoint was written yet" + ("." if cfg.checkpoint_dir else " (set checkpoint_dir to keep one)."))
        return (f"{cfg.method}: non-finite {what} at batch {index} (stream positions {start}-{stop - 1}) of "
                f"{self.data.name}; the run stopped before applying it. {kept} Try a lower lr "
                f"({cfg.lr:g}) or controller_lr ({cfg.controller_lr:g}), set grad_clip, or check the input.")

    def run(self) -> RunResult:
        """Stream every batch, checkpointing as configured; with ``resume``, continue from the checkpoint."""
        cfg, batches = self.cfg, self.batches
        n_online = len(self.data) - batches.split
        progress = self.restore() if cfg.resume and cfg.checkpoint_dir else None
        progress = progress or Progress.start(n_online)
        bar = Bar(len(self.data), f"{cfg.method} {cfg.task} seed {cfg.seed}", "int", disable=not cfg.progress,
                  initial=int(batches.start[progress.next_batch]) if progress.next_batch < len(batches) else len(self.data))
        began = last_save = time.perf_counter()
        for index in range(progress.next_batch, len(batches)):
            start, stop, is_online = int(batches.start[index]), int(batches.stop[index]), bool(batches.online[index])
            t0 = time.perf_counter()
            out = self.step(index)
            loss_mean, accuracy = float(out.loss.mean()), float(out.correct.float().mean())
            progress.rows.append((index, "online" if is_online else "offline", stop, stop - start, loss_mean, accuracy,
                                  time.perf_counter() - t0, out.second_order_ratio))
            if is_online:
                part = slice(start - batches.split, stop - batches.split)
                for s in SIDES:
                    progress.online[f"{s}_popularity"][part] = out.popularity[s][out.view.inverse[s]].cpu().numpy()
                progress.online["loss"][part] = out.loss.cpu().numpy()
                progress.online["correct"][part] = out.correct.cpu().numpy()
            if out.weights["user"] is not None and index % cfg.record_alpha_every == 0:
                progress.alphas.append(out.alpha_records(index, stop, cfg.dims))
            bar.update(stop - start)
            if index % 20 == 0:
                bar.set_postfix(loss=f"{loss_mean:.4f}", acc=f"{accuracy:.3f}")
            due = (index + 1) % cfg.checkpoint_every == 0 if cfg.checkpoint_every else \
                time.perf_counter() - last_save >= 60 * cfg.checkpoint_minutes
            if cfg.checkpoint_dir and due and index + 1 < len(batches):
                self.save_checkpoint(progress, progress.seconds + time.perf_counter() - began)
                last_save = time.perf_counter()
        seen = progress.online_done()
        if seen:  # the last line reports the run's online metrics, not the last batch's
            bar.set_postfix(online_loss=f"{progress.online['loss'][:seen].mean():.4f}",
                            online_acc=f"{progress.online['correct'][:seen].mean():.3f}")
        bar.close()
        progress.seconds += time.perf_counter() - began
        if cfg.checkpoint_dir:  # the finished run: resuming it only rebuilds the results
            self.save_checkpoint(progress, progress.seconds)
        frame = pd.DataFrame(progress.rows, columns=["batch", "stage", "seen", "size", "loss", "accuracy", "seconds",
                                                 "second_order_ratio"])
        return RunResult(cfg.to_dict(), self._summary(frame, progress.seconds), frame, pd.DataFrame(progress.online),
                         pd.concat(progress.alphas, ignore_index=True) if progress.alphas else pd.DataFrame())

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict:
        """Every tensor, optimizer state and RNG state the rest of the run depends on."""
        return {"learner": self.learner.state(), "previous": self.previous,
                "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None}}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        self.learner.load_state(state["learner"])
        self.previous = state["previous"]
        self.rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint.checkpoint_path(self.cfg, self.data)

    def fingerprint(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = checkpoint.fingerprint(self.data)
        return self._fingerprint

    def save_checkpoint(self, progress: Progress, seconds: float) -> Path:
        """Write this run's checkpoint atomically (a reader sees the previous one or this one)."""
        checkpoint.save(self.checkpoint_path, {"config": self.cfg.to_dict(), "data": self.fingerprint(),
                                               "versions": versions(), "trainer": self.state(),
                                               "progress": {**progress.state(), "seconds": seconds}})
        self.saved_after = progress.next_batch - 1
        return self.checkpoint_path

    def restore(self) -> Progress | None:
        """Load this run's checkpoint, if there is one; None otherwise (the run starts from the beginning)."""
        path = self.checkpoint_path
        if not path.is_file():
            return None
        payload = checkpoint.load(path, self.cfg, self.data, self.device)
        threads = payload["config"].get("threads")
        if threads and threads != torch.get_num_threads():  # run() restores the caller's count afterwards
            torch.set_num_threads(threads)  # the sums ordered as before the kill: a resume stays bit for bit
            self.cfg = dataclasses.replace(self.cfg, threads=threads)  # whatever the load or --threads now
        self.load_state(payload["trainer"])
        progress = Progress.from_state(payload["progress"], len(self.data) - self.batches.split)
        self.resumed_from = progress.next_batch
        self.saved_after = progress.next_batch - 1
        return progress

    def _summary(self, frame: pd.DataFrame, seconds: float) -> dict:
        summary = {"method": self.cfg.method, "task": self.cfg.task, "dataset": self.data.name, "seed": self.cfg.seed}
        for stage in ("offline", "online"):
            part = frame[frame.stage == stage]
            size = part["size"].sum()
            summary[f"{stage}_loss"] = float((part.loss * part["size"]).sum() / size) if size else float("nan")
            summary[f"{stage}_accuracy"] = float((part.accuracy * part["size"]).sum() / size) if size else float("nan")
        ratios = frame["second_order_ratio"].dropna()
        summary["hypergradient_second_order_ratio"] = float(ratios.median()) if len(ratios) else None
        summary["tuned"] = self.cfg.tuned_values()
        summary.update(self.learner.memory())
        summary.update(n_interactions=len(self.data), n_users=self.data.n_users, n_items=self.data.n_items,
                       seconds=seconds, samples_per_second=len(self.data) / seconds, device=str(self.device),
                       resumed_from_batch=self.resumed_from,
                       config=self.cfg.to_dict(), versions=versions())
        return summary


def versions() -> dict:
    """Package versions and the git commit, saved beside every result."""
    import pyarrow

    from . import __version__
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"autoemb": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "torch": str(torch.__version__), "numpy": np.__version__, "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__, "git_commit": commit}


def run(cfg: Config, data: Interactions | None = None) -> RunResult:
    """Load ``cfg.dataset`` (unless ``data`` is given) and stream it through ``cfg.method`` with ``cfg.threads``
    torch threads (restored afterwards); the count it ran with is saved in its config."""
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, max_interactions=cfg.max_interactions)
    elif cfg.max_interactions:
        data = data.head(cfg.max_interactions)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(cfg.threads or before)
        return StreamingTrainer(data, dataclasses.replace(cfg, threads=torch.get_num_threads())).run()
    finally:
        torch.set_num_threads(before)
