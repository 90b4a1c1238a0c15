"""The streaming trainer: evaluate-then-train over chronological mini-batches (paper §2.5, Algorithm 1).

One mechanism serves every method; they differ only in how selection weights are produced (none, a
controller, or free logits) and how Theta is updated (never, jointly with W on the training batch, or by
the bilevel step on a validation batch sampled from the past). Per batch:

1. sample a validation batch from past interactions;
2. update Theta by descending grad_Theta L_val(W - xi grad_W L_train(W, Theta), Theta), where L_train is the
   loss of the last batch W trained on (the new batch is not seen before it is evaluated);
3. compute the new batch's selection weights; 4. predict it and record the metrics;
5. update W on it; 6. update the popularity and context tables.

Every part touches only the embedding rows its batches use.
"""
from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call
from tqdm.auto import tqdm

from . import checkpoint
from .atomic import atomic_folder, atomic_write, write_json_atomic
from .config import Config
from .data import load_dataset
from .interactions import Interactions, binary_label, class_label
from .model import DLRS, SIDES, Controller, SparseRows, controller_features, loss_and_correct
from .stream import make_batches, sample_validation


@dataclass
class View:
    """Stream positions with their unique ids: every per-id computation runs once per unique id.

    W's rows and Theta's weights are gathered once for ``ids``; a part of the view (the training or the
    validation half of the bilevel step) names its own unique ids by their positions ``local`` in ``ids``."""

    ids: dict  # side -> unique ids (tensor)
    inverse: dict  # side -> per-sample index into this view's unique ids
    counts: dict  # side -> samples per unique id of this view
    target: torch.Tensor
    local: dict | None = None  # side -> positions in ids of this part's unique ids; None: all of ids

    @classmethod
    def of(cls, columns: dict, target: torch.Tensor) -> "View":
        split = {s: torch.unique(c, return_inverse=True, return_counts=True) for s, c in columns.items()}
        return cls(*({s: u[k] for s, u in split.items()} for k in range(3)), target)

    def part(self, lo: int, hi: int) -> "View":
        inner = View.of({s: v[lo:hi] for s, v in self.inverse.items()}, self.target[lo:hi])
        return View(self.ids, inner.inverse, inner.counts, inner.target, inner.ids)

    def gather(self, side: str, table: torch.Tensor | None) -> torch.Tensor | None:
        """This part's rows of ``table``, a tensor with one row per id of ``ids``."""
        if table is None or self.local is None:
            return table
        return table.index_select(0, self.local[side])


@dataclass
class Step:
    """One processed batch: its view, the ids' popularity before it, per-sample loss and correctness,
    and the selection weights per unique id."""

    view: View
    popularity: dict
    loss: torch.Tensor
    correct: torch.Tensor
    weights: dict

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


class NumericsError(RuntimeError):
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


class StreamingTrainer:
    """Holds W (tables + DLRS), Theta, and the per-id popularity and context tables of one run."""

    def __init__(self, data: Interactions, cfg: Config, dtype: torch.dtype = torch.float32):
        self.cfg, self.data = cfg, data
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.fast_path:
            keep_freed_memory()
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        dev, n_spaces = self.device, len(cfg.dims)
        sizes = {"user": data.n_users, "item": data.n_items}
        self.tables = {s: SparseRows(sizes[s], cfg.width, cfg, cfg.lr, cfg.embedding_init_std, generator, dev, dtype)
                       for s in SIDES}
        self.dlrs = DLRS(cfg).to(dev, dtype)
        self.dense = dict(self.dlrs.named_parameters())
        self.dlrs_opt = self._optimizer(self.dlrs.parameters(), cfg.lr)
        self.controllers = self.logits = None
        if cfg.method in ("sam", "autoemb"):
            self.controllers = torch.nn.ModuleDict({s: Controller(cfg) for s in SIDES}).to(dev, dtype)
            self.controller_opt = self._optimizer(self.controllers.parameters(), cfg.controller_lr)
        elif cfg.method == "darts":  # zero logits: uniform weights until trained
            self.logits = {s: SparseRows(sizes[s], n_spaces, cfg, cfg.controller_lr, 0.0, generator, dev, dtype)
                           for s in SIDES}
        self.popularity = {s: torch.zeros(sizes[s], dtype=torch.int64, device=dev) for s in SIDES}
        self.last_weights = {s: torch.full((sizes[s], n_spaces), 1.0 / n_spaces, dtype=dtype, device=dev)
                             for s in SIDES}
        self.last_loss = {s: torch.zeros(sizes[s], dtype=dtype, device=dev) for s in SIDES}
        label = binary_label(data.rating) if cfg.task == "regression" else class_label(data.rating)
        self.stream = {"user": torch.as_tensor(data.user, device=dev), "item": torch.as_tensor(data.item, device=dev),
                       "target": torch.as_tensor(label, device=dev).to(dtype if cfg.task == "regression" else torch.int64)}
        self.batches = make_batches(len(data), cfg.batch_size, cfg.offline_fraction)
        self.previous: torch.Tensor | None = None  # positions W last trained on
        self.batch = (0, 0, 0)  # (index, start, stop) of the batch in progress, for error messages
        self.saved_after: int | None = None  # the batch after which the last checkpoint was written
        self.resumed_from: int | None = None  # the batch a resumed run continued from
        self._fingerprint = None

    @property
    def reuse_training_forward(self) -> bool:
        """Whether predicting a batch and W's training forward on it give the same outputs: the same
        parameters, the same selection weights and, where there is BatchNorm, batch statistics in both."""
        cfg = self.cfg
        same_statistics = not cfg.selecting or cfg.predict_batchnorm == "batch"
        return cfg.fast_path and same_statistics and not (cfg.bilevel and cfg.validation == "incoming")

    def _optimizer(self, params, lr):
        if self.cfg.optimizer == "adam":  # fused: one kernel for all parameters (7x faster on CPU than foreach)
            return torch.optim.Adam(params, lr=lr, betas=self.cfg.adam_betas, eps=self.cfg.adam_eps,
                                    fused=self.cfg.fast_path or None)
        return torch.optim.SGD(params, lr=lr)

    # -- numerics -------------------------------------------------------------------------------
    def guard(self, what: str, tensors, clip: bool = False) -> None:
        """Stop before a NaN or Inf in ``tensors`` is applied; with ``clip`` and ``grad_clip`` set, rescale
        them (in place) so that their global L2 norm is at most ``grad_clip``."""
        tensors = [t for t in tensors if t is not None]
        if not tensors:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
        if not bool(torch.isfinite(norm)):
            raise NumericsError(self._numerics_message(what))
        if clip and self.cfg.grad_clip is not None:
            torch._foreach_mul_(tensors, torch.clamp(self.cfg.grad_clip / (norm + 1e-6), max=1.0))

    def _numerics_message(self, what: str) -> str:
        index, start, stop = self.batch
        cfg = self.cfg
        kept = (f"The last good checkpoint (after batch {self.saved_after}) is kept in {cfg.checkpoint_dir}."
                if self.saved_after is not None else
                "No checkpoint was written yet" + ("." if cfg.checkpoint_dir else " (set checkpoint_dir to keep one)."))
        return (f"{cfg.method}: non-finite {what} at batch {index} (stream positions {start}-{stop - 1}) of "
                f"{self.data.name}; the run stopped before applying it. {kept} Try a lower lr "
                f"({cfg.lr:g}) or controller_lr ({cfg.controller_lr:g}), set grad_clip, or check the input.")

    # -- building blocks ------------------------------------------------------------------------
    def view(self, positions: torch.Tensor | slice) -> View:
        return self.pairs_view(self.stream["user"][positions], self.stream["item"][positions],
                               self.stream["target"][positions])

    def pairs_view(self, user: torch.Tensor, item: torch.Tensor, target: torch.Tensor) -> View:
        return View.of({"user": user, "item": item}, target)

    def evaluate(self, user, item, rating) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss and correctness of arbitrary (user, item, rating) triples under the current
        parameters, without training or touching any table: for held-out test sets (Figure 1)."""
        label = binary_label(rating) if self.cfg.task == "regression" else class_label(rating)
        target = torch.as_tensor(label, device=self.device).to(self.stream["target"].dtype)
        view = self.pairs_view(torch.as_tensor(user, device=self.device), torch.as_tensor(item, device=self.device), target)
        return loss_and_correct(self.scores(view)[0], view.target, self.cfg.task)

    def theta(self, view: View) -> dict:
        """Theta's leaves for this view: the controllers' parameters, or the gathered logit rows."""
        if self.controllers is not None:
            return dict(self.controllers.named_parameters())
        if self.logits is not None:
            return {s: self.logits[s].gather(view.ids[s]) for s in SIDES}
        return {}

    def selection(self, view: View, theta: dict) -> dict:
        """Selection weights per unique id and side, [n_ids, N], or None for fse / fixed-d."""
        if self.controllers is not None:
            return {s: self.controllers[s](self.features(s, view.ids[s])) for s in SIDES}
        if self.logits is not None:
            return {s: torch.softmax(theta[s], dim=1) for s in SIDES}
        return {s: None for s in SIDES}

    def features(self, side: str, ids: torch.Tensor) -> torch.Tensor:
        return controller_features(self.popularity[side][ids], self.last_weights[side][ids],
                                   self.last_loss[side][ids], self.cfg.popularity_buckets)

    def w_leaves(self, view: View) -> dict:
        """W's leaves for this view: the gathered table rows and the dense DLRS parameters."""
        return {**{f"{s}_rows": self.tables[s].gather(view.ids[s]) for s in SIDES}, **self.dense}

    def outputs(self, w: dict, weights: dict, view: View, bn_mode: str) -> torch.Tensor:
        """The model's outputs for ``view`` under parameters ``w`` (table rows + dense DLRS)."""
        # gathers use index_select: its backward (index_add) is deterministic on CPU, unlike advanced indexing's
        sides = [(view.gather(s, w[f"{s}_rows"]), view.gather(s, weights[s]), view.inverse[s], view.counts[s])
                 for s in SIDES]
        if all(w[k] is p for k, p in self.dense.items()):  # W's own parameters: no need to swap them in
            return self.dlrs(*sides, bn_mode)
        return functional_call(self.dlrs, {k: w[k] for k in self.dense}, (*sides, bn_mode))

    def loss(self, w: dict, weights: dict, view: View, bn_mode: str) -> torch.Tensor:
        """Mean loss of ``view`` under parameters ``w``."""
        return loss_and_correct(self.outputs(w, weights, view, bn_mode), view.target, self.cfg.task)[0].mean()

    # -- Theta ----------------------------------------------------------------------------------
    def hypergradient(self, view: View, n_train: int) -> dict:
        """grad_Theta L_val(W - xi grad_W L_train(W, Theta), Theta); ``view`` holds the training part
        (the first ``n_train`` positions) and then the validation part."""
        cfg, xi = self.cfg, self.cfg.virtual_lr
        train, val = view.part(0, n_train), view.part(n_train, len(view.target))
        theta = self.theta(view)
        w = self.w_leaves(view)
        weights = self.selection(view, theta)
        if xi == 0:  # first order: L_val(W, Theta)
            return dict(zip(theta, torch.autograd.grad(self.loss(w, weights, val, "batch"), list(theta.values()))))
        exact = cfg.hypergradient == "exact"
        l_train = self.loss(w, weights, train, "batch")
        g_w = torch.autograd.grad(l_train, list(w.values()), create_graph=exact, allow_unused=True)
        g_w = [torch.zeros_like(p) if g is None else g for p, g in zip(w.values(), g_w)]
        if exact:  # double backpropagation through the virtual step
            unrolled = {k: p - xi * g for (k, p), g in zip(w.items(), g_w)}
            l_val = self.loss(unrolled, weights, val, "batch")
            return dict(zip(theta, torch.autograd.grad(l_val, list(theta.values()), allow_unused=True)))
        # DARTS' central finite difference of the mixed second derivative, at the original W
        unrolled = {k: (p - xi * g).detach().requires_grad_(True) for (k, p), g in zip(w.items(), g_w)}
        weights = self.selection(view, theta)
        l_val = self.loss(unrolled, weights, val, "batch")
        grads = torch.autograd.grad(l_val, [*theta.values(), *unrolled.values()], allow_unused=True)
        direct, v = grads[:len(theta)], grads[len(theta):]
        v = [torch.zeros_like(p) if g is None else g for p, g in zip(w.values(), v)]
        eps = 0.01 / torch.sqrt(sum((g * g).sum() for g in v)).clamp_min(1e-12)
        mixed = []
        for sign in (1.0, -1.0):
            shifted = {k: (p + sign * eps * g).detach() for (k, p), g in zip(w.items(), v)}
            loss = self.loss(shifted, self.selection(view, theta), train, "batch")
            mixed.append(torch.autograd.grad(loss, list(theta.values()), allow_unused=True))
        return {k: _add(d, None if p is None else -xi * (p - m) / (2 * eps))
                for k, d, p, m in zip(theta, direct, *mixed)}

    def update_theta(self, view: View, grads: dict) -> None:
        if self.controllers is not None:
            for name, p in self.controllers.named_parameters():
                p.grad = grads.get(name)
            self.controller_opt.step()
            self.controller_opt.zero_grad(set_to_none=True)
        else:
            for s in SIDES:
                if grads[s] is not None:
                    self.logits[s].update(view.ids[s], grads[s])

    def bilevel_step(self, index: int) -> None:
        """Update Theta on a validation batch sampled from the past (``uniform`` or ``previous``)."""
        cfg = self.cfg
        val = sample_validation(self.rng, self.batches, index, cfg.validation_size or cfg.batch_size, cfg.validation)
        if len(val):
            self.bilevel_update(torch.as_tensor(val, device=self.device))

    def bilevel_update(self, validation: torch.Tensor) -> None:
        """Theta descends the hypergradient, unrolling W's step on the last batch W trained on."""
        if self.previous is None:
            return
        view = self.view(torch.cat([self.previous, validation]))
        grads = self.hypergradient(view, len(self.previous))
        self.guard("hypergradient of Theta", grads.values(), clip=True)
        self.update_theta(view, grads)

    # -- W --------------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, view: View):
        """The model's outputs for ``view`` with the current parameters, and the weights used."""
        weights = self.selection(view, self.theta(view))
        w = {**{f"{s}_rows": self.tables[s].weight.index_select(0, view.ids[s]) for s in SIDES},
             **self.dense}
        return self.outputs(w, weights, view, self.cfg.predict_batchnorm), weights

    def train_w(self, view: View, weights: dict | None) -> tuple[torch.Tensor, dict]:
        """One step on W (and, for sam only, on the controllers) with the batch's training loss; returns
        the outputs of the training forward (computed before the step) and the weights it used."""
        sam = self.cfg.method == "sam"
        if sam:
            weights = self.selection(view, {})
        w = self.w_leaves(view)
        outputs = self.outputs(w, weights, view, "train")
        loss = loss_and_correct(outputs, view.target, self.cfg.task)[0].mean()
        self.guard("training loss", [loss.detach()])
        extra = list(self.controllers.parameters()) if sam else []
        grads = torch.autograd.grad(loss, [*w.values(), *extra], allow_unused=True)
        self.guard("gradient of W", grads[:len(w)], clip=True)
        self.guard("gradient of the controllers (sam)", grads[len(w):], clip=True)
        for s, g in zip(SIDES, grads[:2]):
            self.tables[s].update(view.ids[s], g)
        for p, g in zip([*list(w.values())[2:], *extra], grads[2:]):
            p.grad = g
        self.dlrs_opt.step()
        self.dlrs_opt.zero_grad(set_to_none=True)
        if sam:
            self.controller_opt.step()
            self.controller_opt.zero_grad(set_to_none=True)
        return outputs.detach(), {s: None if v is None else v.detach() for s, v in weights.items()}

    @torch.no_grad()
    def update_tables(self, view: View, loss: torch.Tensor, weights: dict) -> None:
        """Popularity counts, and each id's last selection weights and mean loss in this batch."""
        for s in SIDES:
            ids, inverse, counts = view.ids[s], view.inverse[s], view.counts[s]
            self.popularity[s].index_add_(0, ids, counts)
            summed = torch.zeros(len(ids), dtype=loss.dtype, device=loss.device).index_add_(0, inverse, loss)
            self.last_loss[s][ids] = summed / counts
            if weights[s] is not None:
                self.last_weights[s][ids] = weights[s].to(self.last_weights[s].dtype)

    # -- the stream -----------------------------------------------------------------------------
    def step(self, index: int, start: int, stop: int) -> "Step":
        """Algorithm 1 for one incoming batch. With ``validation: incoming`` Theta's validation batch is
        the incoming batch itself, used after it has been predicted and before W trains on it."""
        incoming = self.cfg.validation == "incoming"
        self.batch = (index, start, stop)
        if self.cfg.bilevel and not incoming:
            self.bilevel_step(index)
        positions = torch.arange(start, stop, device=self.device)
        view = self.view(slice(start, stop))
        popularity = {s: self.popularity[s][view.ids[s]] for s in SIDES}
        if self.reuse_training_forward:  # the training forward computes exactly the prediction
            with torch.no_grad():
                weights = None if self.cfg.method == "sam" else self.selection(view, self.theta(view))
            logits, weights = self.train_w(view, weights)
            loss, correct = loss_and_correct(logits, view.target, self.cfg.task)
        else:
            logits, weights = self.scores(view)
            loss, correct = loss_and_correct(logits, view.target, self.cfg.task)
            self.guard("prediction loss", [loss])
            if self.cfg.bilevel and incoming:
                self.bilevel_update(positions)
                with torch.no_grad():
                    weights = self.selection(view, self.theta(view))
            self.train_w(view, weights)
        self.update_tables(view, loss, weights)
        self.previous = positions
        return Step(view, popularity, loss, correct, weights)

    def run(self) -> RunResult:
        """Stream every batch, checkpointing as configured; with ``resume``, continue from the checkpoint."""
        cfg, batches = self.cfg, self.batches
        n_online = len(self.data) - batches.split
        progress = self.restore() if cfg.resume and cfg.checkpoint_dir else None
        progress = progress or Progress.start(n_online)
        bar = tqdm(total=len(self.data), disable=not cfg.progress, unit="int", desc=cfg.method, mininterval=1.0,
                   initial=int(batches.start[progress.next_batch]) if progress.next_batch < len(batches) else len(self.data))
        began = last_save = time.perf_counter()
        for index in range(progress.next_batch, len(batches)):
            start, stop, is_online = int(batches.start[index]), int(batches.stop[index]), bool(batches.online[index])
            t0 = time.perf_counter()
            out = self.step(index, start, stop)
            loss_mean, accuracy = float(out.loss.mean()), float(out.correct.float().mean())
            progress.rows.append((index, "online" if is_online else "offline", stop, stop - start, loss_mean, accuracy,
                                  time.perf_counter() - t0))
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
        bar.close()
        progress.seconds += time.perf_counter() - began
        if cfg.checkpoint_dir:  # the finished run: resuming it only rebuilds the results
            self.save_checkpoint(progress, progress.seconds)
        frame = pd.DataFrame(progress.rows, columns=["batch", "stage", "seen", "size", "loss", "accuracy", "seconds"])
        return RunResult(cfg.to_dict(), self._summary(frame, progress.seconds), frame, pd.DataFrame(progress.online),
                         pd.concat(progress.alphas, ignore_index=True) if progress.alphas else pd.DataFrame())

    # -- checkpoints ----------------------------------------------------------------------------
    def state(self) -> dict:
        """Every tensor, optimizer state and RNG state the rest of the run depends on."""
        optional = {"controllers": self.controllers, "controller_opt": getattr(self, "controller_opt", None)}
        return {
            "tables": {s: self.tables[s].state() for s in SIDES},
            "logits": None if self.logits is None else {s: self.logits[s].state() for s in SIDES},
            "dlrs": self.dlrs.state_dict(), "dlrs_opt": self.dlrs_opt.state_dict(),
            **{k: None if v is None else v.state_dict() for k, v in optional.items()},
            "popularity": self.popularity, "last_weights": self.last_weights, "last_loss": self.last_loss,
            "previous": self.previous,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
        }

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for group in ("tables", "logits"):
            for s, table in (getattr(self, group) or {}).items():
                for k, v in state[group][s].items():
                    getattr(table, k).copy_(v)
        self.dlrs.load_state_dict(state["dlrs"])
        self.dlrs_opt.load_state_dict(state["dlrs_opt"])
        if self.controllers is not None:
            self.controllers.load_state_dict(state["controllers"])
            self.controller_opt.load_state_dict(state["controller_opt"])
        for name in ("popularity", "last_weights", "last_loss"):
            for s in SIDES:
                getattr(self, name)[s].copy_(state[name][s])
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
        summary.update(n_interactions=len(self.data), n_users=self.data.n_users, n_items=self.data.n_items,
                       seconds=seconds, samples_per_second=len(self.data) / seconds, device=str(self.device),
                       resumed_from_batch=self.resumed_from,
                       config=self.cfg.to_dict(), versions=versions())
        return summary


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


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
    """Load ``cfg.dataset`` (unless ``data`` is given) and stream it through ``cfg.method``."""
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir, max_interactions=cfg.max_interactions)
    elif cfg.max_interactions:
        data = data.head(cfg.max_interactions)
    return StreamingTrainer(data, cfg).run()
