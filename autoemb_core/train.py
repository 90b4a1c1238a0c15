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
from torch.func import functional_call

from . import checkpoint
from .atomic import atomic_folder, atomic_write, write_json_atomic
from .config import Config
from .data import load_dataset
from .interactions import ClearError, Interactions, binary_label, class_label
from .model import DLRS, SIDES, SparseRows, loss_and_correct, optimizer_step, torch_optimizer_state
from .progress import Bar
from .reference import make_reference
from .mixed import MixedRows
from .selection import Context, make_selector
from .stream import View, holdout_mask, make_batches, sample_validation


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


class StreamingTrainer:
    """Holds W (tables + DLRS) or a reference predictor, the selector (Theta) and the per-id context of
    one run; ``cfg`` is resolved first: its tuned values for this task and method apply."""

    def __init__(self, data: Interactions, cfg: Config, dtype: torch.dtype = torch.float32):
        cfg = cfg.resolved()
        self.cfg, self.data = cfg, data
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu" and cfg.fast_path:
            keep_freed_memory()
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        generator = torch.Generator().manual_seed(cfg.seed)
        dev = self.device
        sizes = {"user": data.n_users, "item": data.n_items}
        self.context = Context(sizes, len(cfg.dims), dtype, dev)
        self.reference = make_reference(cfg, sizes, self._optimizer, dev, dtype) if cfg.reference else None
        self.tables, self.dlrs, self.dense, self.dlrs_opt = {}, None, {}, None
        if self.reference is None:
            self.dlrs = DLRS(cfg).to(dev, dtype)  # the global RNG only: the tables draw from ``generator``
            if cfg.mixed:
                self.tables = {s: MixedRows(sizes[s], cfg.dims, self.dlrs.proj[s], cfg.table_optimizer, cfg.rows_lr,
                                            cfg.embedding_init_std, 2 * cfg.seed + n, dev, dtype, cfg.adam_betas,
                                            cfg.adam_eps, cfg.move_init) for n, s in enumerate(SIDES)}
            else:
                self.tables = {s: SparseRows(sizes[s], cfg.width, cfg.table_optimizer, cfg.rows_lr,
                                             cfg.embedding_init_std, generator, dev, dtype, cfg.adam_betas, cfg.adam_eps)
                               for s in SIDES}
            self.dense = dict(self.dlrs.named_parameters())
            self.dlrs_opt = self._optimizer(self.dlrs.parameters(), cfg.lr)
        self.selector = make_selector(cfg, self.context, sizes, self.tables, generator, self._optimizer, dev, dtype)
        label = binary_label(data.rating) if cfg.task == "regression" else class_label(data.rating)
        self.stream = {"user": torch.as_tensor(data.user, device=dev), "item": torch.as_tensor(data.item, device=dev),
                       "target": torch.as_tensor(label, device=dev).to(dtype if cfg.task == "regression" else torch.int64)}
        self.batches = make_batches(len(data), cfg.batch_size, cfg.offline_fraction)
        self.held = holdout_mask(len(data), cfg.holdout, cfg.seed)  # positions W never trains on
        self.held_positions = np.flatnonzero(self.held)
        self.previous: torch.Tensor | None = None  # positions W last trained on
        self.batch = (0, 0, 0)  # (index, start, stop) of the batch in progress, for error messages
        self.saved_after: int | None = None  # the batch after which the last checkpoint was written
        self.resumed_from: int | None = None  # the batch a resumed run continued from
        self.second_order_ratio = float("nan")  # of the last hypergradient: |second-order part| / |first-order|
        self._fingerprint = None

    @property
    def reuse_training_forward(self) -> bool:
        """Whether predicting a batch and W's training forward on it give the same outputs: the same
        parameters, the same samples, the same selection weights and, where there is BatchNorm, batch
        statistics in both."""
        cfg = self.cfg
        same_statistics = not cfg.selecting or cfg.predict_batchnorm == "batch"
        return (cfg.fast_path and same_statistics and not cfg.holdout and self.reference is None
                and not (cfg.bilevel and cfg.validation == "incoming"))

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
        return self.selector.theta(view)

    def selection(self, view: View, theta: dict) -> dict:
        """Selection weights per unique id and side, [n_ids, N], or None where there are no spaces."""
        return self.selector.weights(view, theta)

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

    def penalty(self, w: dict, view: View) -> torch.Tensor | float:
        """``embedding_l2`` times the mean over ``view``'s samples of |e_user|^2 + |e_item|^2: W's training
        loss adds it (the real step and the virtual one alike); a validation loss does not."""
        if not self.cfg.embedding_l2:
            return 0.0
        total = sum((view.counts[s].to(w[f"{s}_rows"].dtype) * view.gather(s, w[f"{s}_rows"]).square().sum(1)).sum()
                    for s in SIDES)
        return self.cfg.embedding_l2 * total / len(view.target)

    # -- Theta ----------------------------------------------------------------------------------
    def virtual_step(self, w: dict, g_w: list, train: View) -> list:
        """The step W' = W - step of eq. 9, per leaf of ``w``, differentiable in ``g_w``: with ``unroll:
        optimizer`` the step W's own optimizers would take from their current state (:meth:`leaf_step`);
        with ``sgd``, xi * grad."""
        if self.cfg.unroll == "sgd":
            return [g * self.cfg.virtual_lr for g in g_w]
        return [self.leaf_step(key, p, g, train) for (key, p), g in zip(w.items(), g_w)]

    def leaf_step(self, key: str, p: torch.Tensor, g: torch.Tensor, train: View) -> torch.Tensor:
        """The real optimizer's step for one leaf: row-wise for the training part's table rows only (a lazy
        update moves no other row), the dense optimizer's for a DLRS parameter."""
        cfg = self.cfg
        if key.endswith("_rows"):
            side = key[:-len("_rows")]
            rows = train.local[side]
            step = self.tables[side].virtual_step(train.ids[side].index_select(0, rows), g.index_select(0, rows))
            return torch.zeros_like(p).index_add(0, rows, step)
        state = torch_optimizer_state(cfg.optimizer, self.dlrs_opt, self.dense[key])
        return optimizer_step(cfg.optimizer, g, state, cfg.lr, cfg.adam_betas, cfg.adam_eps)

    def hypergradient(self, view: View, n_train: int) -> dict:
        """grad_Theta L_val(W', Theta) with W' = W - step(grad_W L_train(W, Theta)) (:meth:`virtual_step`);
        ``view`` holds the training part (the first ``n_train`` positions) and then the validation part.
        Also sets ``second_order_ratio``: the norm of the part that flows through W' over that of the
        direct part."""
        cfg = self.cfg
        train, val = view.part(0, n_train), view.part(n_train, len(view.target))
        theta = self.theta(view)
        w = self.w_leaves(view)
        weights = self.selection(view, theta)
        if cfg.virtual_lr == 0:  # first order: L_val(W, Theta)
            self.second_order_ratio = 0.0
            l_val = self.loss(w, weights, val, "batch") + self.selector.penalty(val, weights)
            return dict(zip(theta, torch.autograd.grad(l_val, list(theta.values()))))
        exact = cfg.hypergradient == "exact"
        l_train = self.loss(w, weights, train, "batch") + self.penalty(w, train)
        g_w = torch.autograd.grad(l_train, list(w.values()), create_graph=exact, retain_graph=True, allow_unused=True)
        g_w = [torch.zeros_like(p) if g is None else g for p, g in zip(w.values(), g_w)]
        if not exact:
            g_w = [g.detach().requires_grad_(True) for g in g_w]
        steps = self.virtual_step(w, g_w, train)
        unrolled = {k: (p - d).detach().requires_grad_(True) for (k, p), d in zip(w.items(), steps)}
        l_val = self.loss(unrolled, weights, val, "batch") + self.selector.penalty(val, weights)
        grads = torch.autograd.grad(l_val, [*theta.values(), *unrolled.values()], retain_graph=exact,
                                    allow_unused=True)
        direct, v = list(grads[:len(theta)]), grads[len(theta):]
        v = [torch.zeros_like(p) if g is None else g for p, g in zip(w.values(), v)]
        if exact:  # d W'/d Theta^T v by double backpropagation through the step
            moving = [(d, g) for d, g in zip(steps, v) if d.requires_grad]
            second = torch.autograd.grad([d for d, _ in moving], list(theta.values()),
                                         grad_outputs=[-g for _, g in moving], allow_unused=True) if moving else \
                [None] * len(theta)
        else:  # DARTS' central finite difference at the original W, along u = step'(g) * v
            u = [torch.autograd.grad(d.sum(), g, retain_graph=True)[0] * gv if d.requires_grad else torch.zeros_like(gv)
                 for d, g, gv in zip(steps, g_w, v)]
            eps = 0.01 / torch.sqrt(sum((x * x).sum() for x in u)).clamp_min(1e-12)
            mixed = []
            for sign in (1.0, -1.0):
                shifted = {k: (p + sign * eps * x).detach() for (k, p), x in zip(w.items(), u)}
                loss = self.loss(shifted, self.selection(view, theta), train, "batch")
                mixed.append(torch.autograd.grad(loss, list(theta.values()), allow_unused=True))
            second = [None if p is None else -(p - m) / (2 * eps) for p, m in zip(*mixed)]
        self.second_order_ratio = _norm(second) / max(_norm(direct), 1e-30)
        return {k: _add(d, s2) for k, d, s2 in zip(theta, direct, second)}

    def update_theta(self, view: View, grads: dict) -> None:
        self.selector.update(view, grads)

    def bilevel_step(self, index: int) -> None:
        """Update Theta on a validation batch sampled from the past (``uniform``, ``previous`` or ``holdout``)."""
        cfg = self.cfg
        val = sample_validation(self.rng, self.batches, index, cfg.validation_size or cfg.batch_size, cfg.validation,
                                self.held_positions)
        if len(val):
            self.bilevel_update(torch.as_tensor(val, device=self.device))

    def bilevel_update(self, validation: torch.Tensor) -> None:
        """Theta descends the hypergradient, unrolling W's step on the last batch W trained on."""
        if self.previous is None or not len(self.previous):
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
        if self.reference is not None:
            return self.reference.predict(view), weights
        w = {**{f"{s}_rows": self.tables[s].rows(view.ids[s]) for s in SIDES},
             **self.dense}
        return self.outputs(w, weights, view, self.cfg.predict_batchnorm), weights

    def train_w(self, view: View, weights: dict | None) -> tuple[torch.Tensor, dict]:
        """One step on W (and, for a ``joint`` selector such as sam's, on Theta) with the batch's training
        loss; returns the outputs of the training forward (computed before the step) and the weights it used."""
        joint = self.selector.joint
        theta = self.theta(view) if joint else {}
        if joint:
            weights = self.selection(view, theta)
        w = self.w_leaves(view)
        outputs = self.outputs(w, weights, view, "train")
        loss = loss_and_correct(outputs, view.target, self.cfg.task)[0].mean() + self.penalty(w, view)
        self.guard("training loss", [loss.detach()])
        grads = torch.autograd.grad(loss, [*w.values(), *theta.values()], allow_unused=True)
        self.guard("gradient of W", grads[:len(w)], clip=True)
        self.guard(f"gradient of Theta ({self.cfg.method}, joint)", grads[len(w):], clip=True)
        for s, g in zip(SIDES, grads[:2]):
            self.tables[s].update(view.ids[s], g)
        for p, g in zip(list(w.values())[2:], grads[2:len(w)]):
            p.grad = g
        self.dlrs_opt.step()
        self.dlrs_opt.zero_grad(set_to_none=True)
        if joint:
            self.update_theta(view, dict(zip(theta, grads[len(w):])))
        return outputs.detach(), {s: None if v is None else v.detach() for s, v in weights.items()}

    def learn(self, view: View, weights: dict) -> None:
        """W (or the reference predictor) learns from the batch's training samples."""
        if self.reference is not None:
            self.reference.learn(view)
        else:
            self.train_w(view, weights)

    # -- the stream -----------------------------------------------------------------------------
    def step(self, index: int, start: int, stop: int) -> "Step":
        """Algorithm 1 for one incoming batch. With ``validation: incoming`` Theta's validation batch is
        the incoming batch itself, used after it has been predicted and before W trains on it. With a
        held-out share, the whole batch is predicted and scored, and W trains on the rest."""
        incoming = self.cfg.validation == "incoming"
        self.batch = (index, start, stop)
        self.second_order_ratio = float("nan")
        if self.cfg.bilevel and not incoming:
            self.bilevel_step(index)
        positions = torch.arange(start, stop, device=self.device)
        view = self.view(slice(start, stop))
        self.selector.route(view)  # hard selection: each id stored in its chosen space before it is predicted
        popularity = {s: self.context.popularity[s][view.ids[s]] for s in SIDES}
        if self.reuse_training_forward:  # the training forward computes exactly the prediction
            with torch.no_grad():
                weights = None if self.selector.joint else self.selection(view, self.theta(view))
            logits, weights = self.train_w(view, weights)
            loss, correct = loss_and_correct(logits, view.target, self.cfg.task)
            trained = positions
        else:
            logits, weights = self.scores(view)
            loss, correct = loss_and_correct(logits, view.target, self.cfg.task)
            self.guard("prediction loss", [loss])
            if self.cfg.bilevel and incoming:
                self.bilevel_update(positions)
                with torch.no_grad():
                    weights = self.selection(view, self.theta(view))
            trained = positions[torch.as_tensor(~self.held[start:stop], device=self.device)] \
                if self.cfg.holdout else positions
            if len(trained) == len(positions):
                self.learn(view, weights)
            elif len(trained):
                part = self.view(trained)
                with torch.no_grad():
                    part_weights = self.selection(part, self.theta(part))
                self.learn(part, part_weights)
        self.context.update(view, loss, weights)
        self.previous = trained
        return Step(view, popularity, loss, correct, weights)

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
            out = self.step(index, start, stop)
            loss_mean, accuracy = float(out.loss.mean()), float(out.correct.float().mean())
            progress.rows.append((index, "online" if is_online else "offline", stop, stop - start, loss_mean, accuracy,
                                  time.perf_counter() - t0, self.second_order_ratio))
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
        return {
            "tables": {s: t.state() for s, t in self.tables.items()},
            "dlrs": None if self.dlrs is None else self.dlrs.state_dict(),
            "dlrs_opt": None if self.dlrs_opt is None else self.dlrs_opt.state_dict(),
            "selector": self.selector.state(), "context": self.context.state(),
            "reference": None if self.reference is None else self.reference.state(),
            "previous": self.previous,
            "rng": {"numpy": self.rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None},
        }

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for s, table in self.tables.items():
            table.load_state(state["tables"][s])
        if self.dlrs is not None:
            self.dlrs.load_state_dict(state["dlrs"])
            self.dlrs_opt.load_state_dict(state["dlrs_opt"])
        self.selector.load_state(state["selector"])
        self.context.load_state(state["context"])
        if self.reference is not None:
            self.reference.load_state(state["reference"])
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

    def memory(self) -> dict:
        """What the run holds, counted from its tensors: ``embedding_bytes`` (the embedding tables with their
        optimizer state at their allocated capacity, mixed storage's id map and free lists, the transforms with
        their optimizer state and BatchNorm buffers, and a reference predictor's tables), ``selection_bytes`` (the controllers or logits with their optimizer state, and the
        per-id context tables), ``embedding_parameters`` (the literature's count: every id's stored dimensions
        plus the transforms' parameters) and ``peak_rss_bytes`` (the process's peak resident set so far)."""
        transforms = {k: p for k, p in self.dense.items() if k.startswith(("proj.", "bn."))}
        transform_state = [self.dlrs_opt.state.get(p, {}) for p in transforms.values()] if transforms else []
        buffers = [b for k, b in self.dlrs.named_buffers() if k.startswith("bn.")] if self.dlrs is not None else []
        embedding = tensor_bytes([t.allocated() for t in self.tables.values()], list(transforms.values()),
                                 transform_state, buffers, None if self.reference is None else self.reference.state())
        rows = sum(t.stored_parameters() for t in self.tables.values())
        if self.reference is not None:
            rows = sum(v.numel() for v in _tensors(self.reference.state()) if v.is_floating_point())
        return {"embedding_bytes": embedding,
                "selection_bytes": tensor_bytes(self.selector.state(), self.context.state()),
                "embedding_parameters": rows + sum(p.numel() for p in transforms.values()),
                "peak_rss_bytes": peak_rss_bytes()}

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
        summary.update(self.memory())
        if self.cfg.mixed:  # where hard selection stored the ids, and how often they moved
            summary["ids_per_space"] = {s: dict(zip(map(str, self.cfg.dims), t.ids_per_space()))
                                        for s, t in self.tables.items()}
            summary["moves"] = {s: int(t.moves) for s, t in self.tables.items()}
        summary.update(n_interactions=len(self.data), n_users=self.data.n_users, n_items=self.data.n_items,
                       seconds=seconds, samples_per_second=len(self.data) / seconds, device=str(self.device),
                       resumed_from_batch=self.resumed_from,
                       config=self.cfg.to_dict(), versions=versions())
        return summary


def _tensors(obj):
    """Every tensor in a nest of dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def tensor_bytes(*objs) -> int:
    """The bytes allocated for the tensors in ``objs``: each distinct storage once, whole (so a view adds
    nothing, and a table's spare capacity counts)."""
    seen, total = set(), 0
    for t in (t for obj in objs for t in _tensors(obj)):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size (Linux and macOS); None where unknown."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _norm(tensors) -> float:
    present = [t for t in tensors if t is not None]
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(present)))) if present else 0.0


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
