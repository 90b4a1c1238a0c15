"""The reference predictors, under the engine's protocol: the floor any embedding model must clear.

Each predicts a batch from what came before it, then learns from the batch's training samples, like the
embedding models. Their outputs are logits in the models' own output space (one logit under a sigmoid for
regression, five under a softmax for classification), so the same loss and metrics apply.

- ``global-mean``: the running mean label (regression) or class frequencies (classification);
- ``item-mean``: each item's running mean label or class frequencies, shrunk towards the global ones by
  ``item_prior`` pseudo-interactions;
- ``biases``: ``mu + b_user + b_item`` (per class under a softmax for classification), trained online on
  the models' loss, the bias tables row-wise like the embedding tables (``table_optimizer`` at ``table_lr``)
  and ``mu`` by the dense optimizer at ``lr``.
"""
from __future__ import annotations

import torch

from .config import Config
from .model import SIDES, SparseRows, loss_and_correct
from .stream import View


class Reference:
    """The interface: ``predict`` a view, ``learn`` from a view, and a state for checkpoints."""

    def predict(self, view: View) -> torch.Tensor:
        raise NotImplementedError

    def learn(self, view: View) -> None:
        raise NotImplementedError

    def state(self) -> dict:
        raise NotImplementedError

    def load_state(self, state: dict) -> None:
        raise NotImplementedError


def frequency_logits(counts: torch.Tensor, regression: bool) -> torch.Tensor:
    """Logits whose sigmoid (regression: counts = [positives, samples]) or softmax (classification: counts
    per class) gives the frequencies; clamped so that a frequency of 0 or 1 stays finite."""
    if regression:
        p = (counts[..., 0] / counts[..., 1].clamp_min(1e-12)).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p)).unsqueeze(-1)
    p = counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)
    return torch.log(p.clamp_min(1e-6))


class Means(Reference):
    """global-mean (``per_item`` False) and item-mean: running label counts, global and per item."""

    def __init__(self, cfg: Config, n_items: int, per_item: bool, device, dtype):
        self.regression, self.per_item, self.prior = cfg.task == "regression", per_item, cfg.item_prior
        width = 2 if self.regression else cfg.n_outputs
        self.total = torch.zeros(width, dtype=torch.float64, device=device)
        self.items = torch.zeros(n_items if per_item else 0, width, dtype=torch.float64, device=device)
        self.dtype = dtype

    def _global(self) -> torch.Tensor:
        """The global counts, or an uninformed prior (one half positive, or one per class) before any data."""
        empty = self.total[-1] == 0 if self.regression else self.total.sum() == 0
        if not bool(empty):
            return self.total
        prior = torch.ones_like(self.total)
        if self.regression:
            prior[0] = 0.5
        return prior

    def _counts(self, view: View) -> torch.Tensor:
        """The view's labels as counts: [target, 1] per sample (regression) or a one-hot of the class."""
        if self.regression:
            return torch.stack([view.target.double(), torch.ones_like(view.target, dtype=torch.float64)], 1)
        return torch.nn.functional.one_hot(view.target, self.total.shape[0]).double()

    def predict(self, view: View) -> torch.Tensor:
        overall = self._global()
        if not self.per_item:
            return frequency_logits(overall, self.regression).to(self.dtype).expand(len(view.target), -1)
        share = overall / (overall[-1] if self.regression else overall.sum())  # per pseudo-interaction
        counts = self.items.index_select(0, view.ids["item"]) + self.prior * share
        return frequency_logits(counts, self.regression).to(self.dtype).index_select(0, view.inverse["item"])

    @torch.no_grad()
    def learn(self, view: View) -> None:
        counts = self._counts(view)
        self.total += counts.sum(0)
        if self.per_item:
            summed = torch.zeros(len(view.ids["item"]), counts.shape[1], dtype=counts.dtype, device=counts.device)
            self.items.index_add_(0, view.ids["item"], summed.index_add_(0, view.inverse["item"], counts))

    def state(self) -> dict:
        return {"total": self.total, "items": self.items}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        self.total.copy_(state["total"])
        self.items.copy_(state["items"])


class Biases(Reference):
    """``mu + b_user + b_item`` in logit space, trained online on the models' own loss."""

    def __init__(self, cfg: Config, sizes: dict, make_optimizer, device, dtype):
        self.task = cfg.task
        self.tables = {s: SparseRows(sizes[s], cfg.n_outputs, cfg.table_optimizer, cfg.rows_lr, 0.0, None, device,
                                     dtype, cfg.adam_betas, cfg.adam_eps) for s in SIDES}
        self.mu = torch.zeros(cfg.n_outputs, dtype=dtype, device=device, requires_grad=True)
        self.optimizer = make_optimizer([self.mu], cfg.lr)

    def _logits(self, rows: dict, view: View) -> torch.Tensor:
        return self.mu + rows["user"].index_select(0, view.inverse["user"]) \
            + rows["item"].index_select(0, view.inverse["item"])

    @torch.no_grad()
    def predict(self, view: View) -> torch.Tensor:
        return self._logits({s: self.tables[s].weight.index_select(0, view.ids[s]) for s in SIDES}, view)

    def learn(self, view: View) -> None:
        rows = {s: self.tables[s].gather(view.ids[s]) for s in SIDES}
        loss = loss_and_correct(self._logits(rows, view), view.target, self.task)[0].mean()
        g_user, g_item, g_mu = torch.autograd.grad(loss, [rows["user"], rows["item"], self.mu])
        self.tables["user"].update(view.ids["user"], g_user)
        self.tables["item"].update(view.ids["item"], g_item)
        self.mu.grad = g_mu
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state(self) -> dict:
        return {"tables": {s: self.tables[s].state() for s in SIDES}, "mu": self.mu,
                "optimizer": self.optimizer.state_dict()}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for s in SIDES:
            for k, v in state["tables"][s].items():
                getattr(self.tables[s], k).copy_(v)
        self.mu.copy_(state["mu"])
        self.optimizer.load_state_dict(state["optimizer"])


def make_reference(cfg: Config, sizes: dict, make_optimizer, device, dtype) -> Reference:
    """The reference predictor of ``cfg.method``."""
    if cfg.method == "biases":
        return Biases(cfg, sizes, make_optimizer, device, dtype)
    return Means(cfg, sizes["item"], cfg.method == "item-mean", device, dtype)
