"""How selection weights are produced and how Theta is updated: one small interface, one class per family.

A :class:`Selector` answers three questions for the trainer, and knows nothing of the run loop:

- ``theta(view)``: Theta's leaves for a batch view (to differentiate through), or ``{}``;
- ``weights(view, theta)``: the selection weights per side, one row per unique id, or ``None`` (no spaces);
- ``update(view, grads)``: descend Theta's gradient (from the bilevel step, or, with ``joint``, from W's
  training loss);
- ``route(view)``: with hard selection, store each id of an incoming batch in its chosen space before it is
  predicted; ``penalty(view, weights)``: a term Theta's validation loss adds.

Families: :class:`NoSelection` (fse, fixed-d and the reference predictors), :class:`Controllers` (autoemb by
the bilevel step, sam jointly with W; :class:`HardControllers`, autoemb-hard), :class:`Logits` (darts) and
:class:`FixedRule` (the allocation controls uniform, random and popularity-rule). :class:`Context` holds the per-id popularity and context
that the controllers and the popularity rule read.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .model import SIDES, Controller, SparseRows, controller_features
from .stream import View


class Context:
    """Per id: popularity (interactions before the current batch), the selection weights it received last
    time and its mean loss last time. An id with no loss yet reads the running mean loss of the stream,
    a neutral value, instead of a perfect 0."""

    def __init__(self, sizes: dict, n_spaces: int, dtype, device):
        self.popularity = {s: torch.zeros(sizes[s], dtype=torch.int64, device=device) for s in SIDES}
        self.last_weights = {s: torch.full((sizes[s], n_spaces), 1.0 / n_spaces, dtype=dtype, device=device)
                             for s in SIDES}
        self.last_loss = {s: torch.full((sizes[s],), -1.0, dtype=dtype, device=device) for s in SIDES}  # -1: none yet
        self.loss_total = torch.zeros(2, dtype=torch.float64, device=device)  # sum of losses, samples

    def running_loss(self) -> torch.Tensor:
        """Mean loss of every sample so far (0.25, a constant 0.5 prediction's MSE, before the first)."""
        total, count = self.loss_total
        return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, 0.25))

    def features(self, side: str, ids: torch.Tensor, buckets: int) -> torch.Tensor:
        last = self.last_loss[side][ids]
        last = torch.where(last < 0, self.running_loss().to(last.dtype), last)
        return controller_features(self.popularity[side][ids], self.last_weights[side][ids], last, buckets)

    @torch.no_grad()
    def update(self, view: View, loss: torch.Tensor, weights: dict) -> None:
        """Count the batch's interactions; keep each id's weights and mean loss in it."""
        for s in SIDES:
            ids, inverse, counts = view.ids[s], view.inverse[s], view.counts[s]
            self.popularity[s].index_add_(0, ids, counts)
            summed = torch.zeros(len(ids), dtype=loss.dtype, device=loss.device).index_add_(0, inverse, loss)
            self.last_loss[s][ids] = (summed / counts).to(self.last_loss[s].dtype)
            if weights[s] is not None:
                self.last_weights[s][ids] = weights[s].to(self.last_weights[s].dtype)
        self.loss_total += torch.stack([loss.sum().double(), torch.tensor(float(len(loss)), dtype=torch.float64,
                                                                          device=loss.device)])

    def state(self) -> dict:
        return {"popularity": self.popularity, "last_weights": self.last_weights, "last_loss": self.last_loss,
                "loss_total": self.loss_total}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for name in ("popularity", "last_weights", "last_loss"):
            for s in SIDES:
                getattr(self, name)[s].copy_(state[name][s])
        self.loss_total.copy_(state["loss_total"])


class Selector:
    """No spaces, no Theta: the base of every family."""

    joint = False  # Theta trained with W on the training batch's loss

    def theta(self, view: View) -> dict:
        return {}

    def weights(self, view: View, theta: dict) -> dict:
        return {s: None for s in SIDES}

    def update(self, view: View, grads: dict) -> None:
        pass

    def route(self, view: View) -> None:
        pass

    def penalty(self, view: View, weights: dict) -> torch.Tensor | float:
        return 0.0

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        pass


class NoSelection(Selector):
    """fse, fixed-d and the reference predictors: the rows go straight to the head."""


class Controllers(Selector):
    """One controller per side maps an id's popularity and context to its weights (Figure 4): autoemb
    trains them by the bilevel step, sam (``joint``) on the training batch's loss."""

    def __init__(self, cfg: Config, context: Context, joint: bool, make_optimizer, device, dtype):
        self.cfg, self.context, self.joint = cfg, context, joint
        self.controllers = torch.nn.ModuleDict({s: Controller(cfg) for s in SIDES}).to(device, dtype)
        self.optimizer = make_optimizer(self.controllers.parameters(), cfg.controller_lr)

    def theta(self, view: View) -> dict:
        return dict(self.controllers.named_parameters())

    def weights(self, view: View, theta: dict) -> dict:
        buckets = self.cfg.popularity_buckets
        return {s: self.controllers[s](self.context.features(s, view.ids[s], buckets)) for s in SIDES}

    def update(self, view: View, grads: dict) -> None:
        for name, p in self.controllers.named_parameters():
            p.grad = grads.get(name)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state(self) -> dict:
        return {"controllers": self.controllers.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        self.controllers.load_state_dict(state["controllers"])
        self.optimizer.load_state_dict(state["optimizer"])


def straight_through(soft: torch.Tensor, space: torch.Tensor) -> torch.Tensor:
    """One-hot on ``space`` in value, with the gradient of ``soft``: the forward uses only the chosen space."""
    return F.one_hot(space.clamp_min(0), soft.shape[1]).to(soft.dtype) + (soft - soft.detach())  # exactly 0 added


class HardControllers(Controllers):
    """autoemb-hard (eq. 6): each id is represented by the one space its controller rates highest, and is stored
    there only (:class:`~autoemb_core.mixed.MixedRows`). The weights are straight-through: one-hot on the stored
    space forward, the controller's softmax backward, so the bilevel step trains the controllers as in autoemb.
    ``memory_penalty`` adds the expected share of the largest size to Theta's validation loss."""

    def __init__(self, cfg: Config, context: Context, tables: dict, make_optimizer, device, dtype):
        super().__init__(cfg, context, False, make_optimizer, device, dtype)
        self.tables = tables
        self.share = torch.tensor(cfg.dims, dtype=dtype, device=device) / cfg.dims[-1]

    @torch.no_grad()
    def route(self, view: View) -> None:
        soft = super().weights(view, {})
        for s in SIDES:
            self.tables[s].route(view.ids[s], soft[s].argmax(1))

    def weights(self, view: View, theta: dict) -> dict:
        soft = super().weights(view, theta)
        return {s: straight_through(soft[s], self.tables[s].stored_space(view.ids[s])) for s in SIDES}

    def penalty(self, view: View, weights: dict) -> torch.Tensor | float:
        if not self.cfg.memory_penalty:
            return 0.0
        return self.cfg.memory_penalty * sum((view.gather(s, weights[s]) @ self.share).mean() for s in SIDES)


class Logits(Selector):
    """darts: N free logits per id (softmax), zero at first (uniform), row-wise at ``logit_lr``."""

    def __init__(self, cfg: Config, sizes: dict, generator, device, dtype):
        self.logits = {s: SparseRows(sizes[s], len(cfg.dims), cfg.table_optimizer, cfg.logit_lr, 0.0, generator,
                                     device, dtype, cfg.adam_betas, cfg.adam_eps) for s in SIDES}

    def theta(self, view: View) -> dict:
        return {s: self.logits[s].gather(view.ids[s]) for s in SIDES}

    def weights(self, view: View, theta: dict) -> dict:
        return {s: torch.softmax(theta[s], dim=1) for s in SIDES}

    def update(self, view: View, grads: dict) -> None:
        for s in SIDES:
            if grads.get(s) is not None:
                self.logits[s].update(view.ids[s], grads[s])

    def state(self) -> dict:
        return {s: self.logits[s].state() for s in SIDES}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for s in SIDES:
            for k, v in state[s].items():
                getattr(self.logits[s], k).copy_(v)


def popularity_rule(popularity: torch.Tensor, thresholds) -> torch.Tensor:
    """The space an id of this popularity gets: the number of ``thresholds`` it has reached, so space 0
    (the smallest) below the first threshold and the largest at or above the last (mixed-dimension
    embeddings' rule: d grows with popularity)."""
    edges = torch.as_tensor(list(thresholds), dtype=popularity.dtype, device=popularity.device)
    return torch.bucketize(popularity, edges, right=True)


class FixedRule(Selector):
    """The allocation controls, in the AutoEmb architecture with no Theta: ``uniform`` (1/N each),
    ``random`` (a fixed weight vector per id, uniform on the simplex, drawn once from the seed) and
    ``popularity-rule`` (all weight on the space :func:`popularity_rule` picks for the id's current
    popularity). With ``storage: mixed`` the popularity rule stores each id at its size only (mixed-dimension
    embeddings)."""

    def __init__(self, cfg: Config, context: Context, sizes: dict, tables: dict, device, dtype):
        self.cfg, self.context, self.dtype, self.tables = cfg, context, dtype, tables
        n = len(cfg.dims)
        if cfg.method == "random":
            rng = np.random.default_rng([cfg.seed, 0x5A4D])
            self.table = {s: torch.as_tensor(rng.dirichlet(np.ones(n), size=sizes[s]), dtype=dtype, device=device)
                          for s in SIDES}

    def weights(self, view: View, theta: dict) -> dict:
        n = len(self.cfg.dims)
        out = {}
        for s in SIDES:
            ids = view.ids[s]
            if self.cfg.method == "uniform":
                out[s] = torch.full((len(ids), n), 1.0 / n, dtype=self.dtype, device=ids.device)
            elif self.cfg.method == "random":
                out[s] = self.table[s].index_select(0, ids)
            else:
                out[s] = F.one_hot(self.rule(s, ids), n).to(self.dtype)
        return out

    def rule(self, side: str, ids: torch.Tensor) -> torch.Tensor:
        return popularity_rule(self.context.popularity[side][ids], self.cfg.rule_thresholds)

    @torch.no_grad()
    def route(self, view: View) -> None:
        if self.cfg.mixed:
            for s in SIDES:
                self.tables[s].route(view.ids[s], self.rule(s, view.ids[s]))


def make_selector(cfg: Config, context: Context, sizes: dict, tables: dict, generator, make_optimizer, device,
                  dtype) -> Selector:
    """The selector of ``cfg.method``; ``tables`` are W's embedding tables, which hard selection routes ids in."""
    kind = cfg.spec.selector
    if kind == "hard-controllers":
        return HardControllers(cfg, context, tables, make_optimizer, device, dtype)
    if kind == "controllers":
        return Controllers(cfg, context, cfg.spec.theta == "joint", make_optimizer, device, dtype)
    if kind == "logits":
        return Logits(cfg, sizes, generator, device, dtype)
    if kind == "rule":
        return FixedRule(cfg, context, sizes, tables, device, dtype)
    return NoSelection()
