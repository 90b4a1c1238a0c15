"""The learner contract, and the embedding learner: W (tables and DLRS), Theta (the selector) and the bilevel maths.

Every method is a :class:`Learner`. The stream loop (:mod:`autoemb_core.train`) knows only these methods:

- ``predict(view)``: the batch's logits and the selection weights its ids received (None per side where there
  are no spaces), from what was learned before the batch;
- ``learn(view, keep=None)``: learn from the batch that was just predicted (W trains on its samples where
  ``keep`` is True; the rest are held out), then record the batch in the per-id context;
- ``theta_step(train, validation)``: Theta's step of eq. 8-9 on a validation view, unrolling W's step on the
  view W last trained on; a no-op (NaN) unless Theta learns by the bilevel step (``uses_validation``);
- ``route(view)``: hard selection stores each id in its chosen space before it is predicted;
- ``popularity(view)``: each id's interactions before the batch;
- ``state()`` / ``load_state()``: every tensor the rest of a run depends on; ``memory()``: what it holds.

A learner knows nothing of the stream, checkpoints or progress. A non-finite value raises :class:`NonFinite`
before it is applied; the loop turns it into a message that says where in the stream it happened.
"""
from __future__ import annotations

import sys

import torch
from torch.func import functional_call

from .config import Config
from .mixed import MixedRows
from .model import DLRS, SIDES, SparseRows, loss_and_correct, optimizer_step, torch_optimizer_state
from .selection import Context, make_selector
from .stream import View, microbatches


class NonFinite(ArithmeticError):
    """A loss or gradient (``what``) went NaN or infinite; nothing was applied."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class Learner:
    """The contract, and what every learner shares: the per-id context (popularity, last weights and loss),
    the dense optimizer, the numerics guard, and the memory count."""

    uses_validation = False  # theta_step does something: the stream draws a validation batch for it
    counting = False  # learns by counting (the running means): one pass over the whole batch, whatever the settings

    def __init__(self, cfg: Config, sizes: dict, device, dtype):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.context = Context(sizes, len(cfg.dims), dtype, device)
        self.predicted: tuple | None = None  # (view, logits, weights) of the prediction not yet learned from

    # -- the contract ---------------------------------------------------------------------------
    def predict(self, view: View) -> tuple[torch.Tensor, dict]:
        """Logits for ``view`` and the weights per side (one row per unique id, or None), learning nothing."""
        logits, weights = self.forward(view)
        self.predicted = (view, logits, weights)
        return logits, weights

    def learn(self, view: View, keep: torch.Tensor | None = None) -> None:
        """Learn from ``view`` (its samples where ``keep`` is True): ``train_passes`` passes, each one step per
        micro-batch of ``train_microbatch`` samples in stream order (:func:`microbatches`). When ``view`` is the
        batch just predicted, the context then records its ids' weights and prediction losses."""
        predicted = self.predicted if self.predicted is not None and self.predicted[0] is view else None
        self.predicted = None
        weights = predicted[2] if predicted else None
        train = view if keep is None or bool(keep.all()) else view.subset(keep) if bool(keep.any()) else None
        if train is not None:
            chunks = [train] if self.counting else [train.chunk(lo, hi) for lo, hi in
                                                    microbatches(len(train.target), self.cfg.train_microbatch)]
            for _ in range(1 if self.counting else self.cfg.train_passes):
                for chunk in chunks:
                    self.fit(chunk, weights if chunk is view else None)
        if predicted:
            self.context.update(view, loss_and_correct(predicted[1], view.target, self.cfg.task)[0], weights)

    def theta_step(self, train: View, validation: View) -> float:
        """Theta's bilevel step; returns |second-order part| / |first-order part| of its hypergradient (NaN
        where there is none)."""
        return float("nan")

    def route(self, view: View) -> None:
        """Hard selection: store each id of ``view`` in its chosen space (nothing elsewhere)."""

    def popularity(self, view: View) -> dict:
        """Each side's unique ids' interactions before this batch."""
        return {s: self.context.popularity[s][view.ids[s]] for s in SIDES}

    def state(self) -> dict:
        return {"context": self.context.state()}

    def load_state(self, state: dict) -> None:
        self.context.load_state(state["context"])

    def memory(self) -> dict:
        """What the learner holds, counted from its tensors: ``embedding_bytes`` (the embedding or bias tables
        with their optimizer state at their allocated capacity, mixed storage's id map and free lists, the
        transforms with their optimizer state and BatchNorm buffers), ``selection_bytes`` (the controllers or
        logits with their optimizer state, and the per-id context tables), ``embedding_parameters`` (the
        literature's count: every id's stored dimensions plus the transforms' parameters) and ``peak_rss_bytes``
        (the process's peak resident set so far)."""
        stored, parameters = self.stored()
        return {"embedding_bytes": tensor_bytes(stored), "selection_bytes": tensor_bytes(self.context.state()),
                "embedding_parameters": parameters, "peak_rss_bytes": peak_rss_bytes()}

    # -- what a learner defines -----------------------------------------------------------------
    def forward(self, view: View) -> tuple[torch.Tensor, dict]:
        """The prediction of :meth:`predict`."""
        raise NotImplementedError

    def fit(self, view: View, weights: dict | None) -> None:
        """One step on ``view``; ``weights``: the ones predicted for it, if it was predicted."""
        raise NotImplementedError

    def stored(self) -> tuple[list, int]:
        """The tensors that store embeddings, and the parameters they count (for :meth:`memory`)."""
        raise NotImplementedError

    # -- shared tools ---------------------------------------------------------------------------
    def row_gradient(self, view: View, grad: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """A table row's gradient from the mean loss over ``view``: as it is (``row_gradient: mean``), or its
        own samples' gradients summed (``sum``): the mean's times the step's size (in place with ``inplace``,
        for a gradient no graph holds)."""
        if self.cfg.row_gradient == "mean":
            return grad
        return grad.mul_(len(view.target)) if inplace else grad * len(view.target)

    def optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        """The dense optimizer (``cfg.optimizer``) at ``lr``."""
        if self.cfg.optimizer == "adam":  # fused: one kernel for all parameters (7x faster on CPU than foreach)
            return torch.optim.Adam(params, lr=lr, betas=self.cfg.adam_betas, eps=self.cfg.adam_eps,
                                    fused=self.cfg.fast_path or None)
        return torch.optim.SGD(params, lr=lr)

    def guard(self, what: str, tensors, clip: bool = False) -> None:
        """Raise :class:`NonFinite` before a NaN or Inf in ``tensors`` is applied; with ``clip`` and
        ``grad_clip`` set, rescale them (in place) so that their global L2 norm is at most ``grad_clip``."""
        tensors = [t for t in tensors if t is not None]
        if not tensors:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
        if not bool(torch.isfinite(norm)):
            raise NonFinite(what)
        if clip and self.cfg.grad_clip is not None:
            torch._foreach_mul_(tensors, torch.clamp(self.cfg.grad_clip / (norm + 1e-6), max=1.0))


class EmbeddingLearner(Learner):
    """W: the user and item tables (full, or mixed under hard selection) and the DLRS; Theta: the selector of
    the method's family (none, controllers, logits or a fixed rule)."""

    def __init__(self, cfg: Config, sizes: dict, device, dtype):
        super().__init__(cfg, sizes, device, dtype)
        generator = torch.Generator().manual_seed(cfg.seed)
        self.dlrs = DLRS(cfg).to(device, dtype)  # the global RNG only: the tables draw from ``generator``
        if cfg.mixed:
            self.tables = {s: MixedRows(sizes[s], cfg.dims, self.dlrs.proj[s], cfg.table_optimizer, cfg.rows_lr,
                                        cfg.embedding_init_std, 2 * cfg.seed + n, device, dtype, cfg.adam_betas,
                                        cfg.adam_eps, cfg.move_init) for n, s in enumerate(SIDES)}
        else:
            self.tables = {s: SparseRows(sizes[s], cfg.width, cfg.table_optimizer, cfg.rows_lr,
                                         cfg.embedding_init_std, generator, device, dtype, cfg.adam_betas, cfg.adam_eps)
                           for s in SIDES}
        self.dense = dict(self.dlrs.named_parameters())
        self.dlrs_opt = self.optimizer(self.dlrs.parameters(), cfg.lr)
        self.selector = make_selector(cfg, self.context, sizes, self.tables, generator, self.optimizer, device, dtype)
        self.uses_validation = cfg.bilevel
        # predicting a batch and W's training forward on it give the same outputs (the same parameters, samples
        # and weights, and batch statistics in both where there is BatchNorm): the prediction keeps the forward
        same_statistics = not cfg.batchnorm or cfg.predict_batchnorm == "batch"
        whole = cfg.train_microbatch is None or cfg.train_microbatch >= cfg.batch_size  # W's first step: the batch
        self.reuse_training_forward = (cfg.fast_path and same_statistics and whole and not cfg.holdout
                                       and not (cfg.bilevel and cfg.validation == "incoming"))
        self.training_forward: tuple | None = None  # (view, w, theta, outputs, weights) kept by the prediction

    # -- the contract ---------------------------------------------------------------------------
    def forward(self, view: View) -> tuple[torch.Tensor, dict]:
        self.training_forward = None
        if self.reuse_training_forward and torch.is_grad_enabled():
            joint = self.selector.joint
            with torch.no_grad():
                weights = None if joint else self.selection(view, self.theta(view))
            self.training_forward = (view, *self.training_outputs(view, weights))
            outputs, weights = self.training_forward[3], self.training_forward[4]
            return outputs.detach(), {s: None if v is None else v.detach() for s, v in weights.items()}
        return self.scores(view)

    def fit(self, view: View, weights: dict | None) -> None:
        kept = self.training_forward
        self.training_forward = None
        if kept is not None and kept[0] is view:
            self.train_w(view, *kept[1:])
        else:
            self.train_w(view, *self.training_outputs(view, weights))

    def theta_step(self, train: View, validation: View) -> float:
        """Theta descends the hypergradient on ``validation``, unrolling W's step on ``train``. A prediction
        not yet learned from (the incoming batch as validation) takes the new weights."""
        if not self.cfg.bilevel:
            return float("nan")
        view = View.joined(train, validation)
        grads, ratio = self.hypergradient(view, len(train.target))
        self.guard("hypergradient of Theta", grads.values(), clip=True)
        self.selector.update(view, grads)
        if self.predicted is not None:
            predicted = self.predicted[0]
            with torch.no_grad():
                self.predicted = (predicted, self.predicted[1], self.selection(predicted, self.theta(predicted)))
        return ratio

    def route(self, view: View) -> None:
        self.selector.route(view)

    def state(self) -> dict:
        return {**super().state(), "tables": {s: t.state() for s, t in self.tables.items()},
                "dlrs": self.dlrs.state_dict(), "dlrs_opt": self.dlrs_opt.state_dict(), "selector": self.selector.state()}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        super().load_state(state)
        for s, table in self.tables.items():
            table.load_state(state["tables"][s])
        self.dlrs.load_state_dict(state["dlrs"])
        self.dlrs_opt.load_state_dict(state["dlrs_opt"])
        self.selector.load_state(state["selector"])

    def stored(self) -> tuple[list, int]:
        transforms = {k: p for k, p in self.dense.items() if k.startswith(("proj.", "bn."))}
        transform_state = [self.dlrs_opt.state.get(p, {}) for p in transforms.values()]
        buffers = [b for k, b in self.dlrs.named_buffers() if k.startswith("bn.")]
        rows = sum(t.stored_parameters() for t in self.tables.values())
        return ([[t.allocated() for t in self.tables.values()], list(transforms.values()), transform_state, buffers],
                rows + sum(p.numel() for p in transforms.values()))

    def memory(self) -> dict:
        memory = super().memory()
        memory["selection_bytes"] = tensor_bytes(self.selector.state(), self.context.state())
        if self.cfg.mixed:  # where hard selection stored the ids, and how often they moved
            memory["ids_per_space"] = {s: dict(zip(map(str, self.cfg.dims), t.ids_per_space()))
                                       for s, t in self.tables.items()}
            memory["moves"] = {s: int(t.moves) for s, t in self.tables.items()}
        return memory

    # -- W --------------------------------------------------------------------------------------
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

    @torch.no_grad()
    def scores(self, view: View) -> tuple[torch.Tensor, dict]:
        """The model's outputs for ``view`` with the current parameters, and the weights used."""
        weights = self.selection(view, self.theta(view))
        w = {**{f"{s}_rows": self.tables[s].rows(view.ids[s]) for s in SIDES}, **self.dense}
        return self.outputs(w, weights, view, self.cfg.predict_batchnorm), weights

    def training_outputs(self, view: View, weights: dict | None) -> tuple:
        """W's training forward on ``view`` (batch statistics, BatchNorm's running ones updated): W's leaves,
        Theta's (a joint selector's, else none), the outputs and the weights. ``weights`` None: computed here,
        with their graph for a joint selector (sam's), without for the others."""
        joint = self.selector.joint
        theta = self.theta(view) if joint else {}
        if joint:
            weights = self.selection(view, theta)
        elif weights is None:
            with torch.no_grad():
                weights = self.selection(view, self.theta(view))
        w = self.w_leaves(view)
        return w, theta, self.outputs(w, weights, view, "train"), weights

    def train_w(self, view: View, w: dict, theta: dict, outputs: torch.Tensor, weights: dict) -> None:
        """One step on W (and, for a joint selector, on Theta) from the training forward's ``outputs``."""
        loss = loss_and_correct(outputs, view.target, self.cfg.task)[0].mean() + self.penalty(w, view)
        self.guard("training loss", [loss.detach()])
        grads = torch.autograd.grad(loss, [*w.values(), *theta.values()], allow_unused=True)
        self.guard("gradient of W", grads[:len(w)], clip=True)
        self.guard(f"gradient of Theta ({self.cfg.method}, joint)", grads[len(w):], clip=True)
        for s, g in zip(SIDES, grads[:2]):
            self.tables[s].update(view.ids[s], self.row_gradient(view, g, inplace=True))
        for p, g in zip(list(w.values())[2:], grads[2:len(w)]):
            p.grad = g
        self.dlrs_opt.step()
        self.dlrs_opt.zero_grad(set_to_none=True)
        if theta:
            self.selector.update(view, dict(zip(theta, grads[len(w):])))

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
            step = self.tables[side].virtual_step(train.ids[side].index_select(0, rows),
                                                  self.row_gradient(train, g.index_select(0, rows)))
            return torch.zeros_like(p).index_add(0, rows, step)
        state = torch_optimizer_state(cfg.optimizer, self.dlrs_opt, self.dense[key])
        return optimizer_step(cfg.optimizer, g, state, cfg.lr, cfg.adam_betas, cfg.adam_eps)

    def hypergradient(self, view: View, n_train: int) -> tuple[dict, float]:
        """grad_Theta L_val(W', Theta) with W' = W - step(grad_W L_train(W, Theta)) (:meth:`virtual_step`);
        ``view`` holds the training part (the first ``n_train`` positions) and then the validation part. Also
        returns the norm of the part that flows through W' over that of the direct part."""
        cfg = self.cfg
        train, val = view.part(0, n_train), view.part(n_train, len(view.target))
        theta = self.theta(view)
        w = self.w_leaves(view)
        weights = self.selection(view, theta)
        if cfg.virtual_lr == 0:  # first order: L_val(W, Theta)
            l_val = self.loss(w, weights, val, "batch") + self.selector.penalty(val, weights)
            return dict(zip(theta, torch.autograd.grad(l_val, list(theta.values())))), 0.0
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
        ratio = _norm(second) / max(_norm(direct), 1e-30)
        return {k: _add(d, s2) for k, d, s2 in zip(theta, direct, second)}, ratio


def tensors_in(obj):
    """Every tensor in a nest of dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from tensors_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from tensors_in(v)


def tensor_bytes(*objs) -> int:
    """The bytes allocated for the tensors in ``objs``: each distinct storage once, whole (so a view adds
    nothing, and a table's spare capacity counts)."""
    seen, total = set(), 0
    for t in (t for obj in objs for t in tensors_in(obj)):
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def float_parameters(obj) -> int:
    """The number of floating-point values in the tensors of ``obj``."""
    return sum(t.numel() for t in tensors_in(obj) if t.is_floating_point())


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
