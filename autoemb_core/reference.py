"""The reference predictors, under the engine's protocol: the floor any embedding model must clear.

Each is a :class:`~autoemb_core.learner.Learner`: it predicts a batch from what came before it, then learns from
the batch's training samples, like the embedding models. Their outputs are logits in the models' own output space (one logit under a sigmoid for
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
from .learner import Learner, float_parameters
from .model import SIDES, SparseRows, loss_and_correct
from .stream import View

NO_WEIGHTS = {s: None for s in SIDES}  # no embedding spaces, no selection weights


class Reference(Learner):
    """A predictor with no embeddings: its own tensors (:meth:`tensors`) are all it stores."""

    def tensors(self) -> dict:
        raise NotImplementedError

    def stored(self) -> tuple[list, int]:
        return [self.tensors()], float_parameters(self.tensors())

    def state(self) -> dict:
        return {**super().state(), "reference": self.tensors()}


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

    counting = True

    def __init__(self, cfg: Config, sizes: dict, device, dtype):
        super().__init__(cfg, sizes, device, dtype)
        per_item, n_items = cfg.method == "item-mean", sizes["item"]
        self.regression, self.per_item, self.prior = cfg.task == "regression", per_item, cfg.item_prior
        width = 2 if self.regression else cfg.n_outputs
        self.total = torch.zeros(width, dtype=torch.float64, device=device)
        self.items = torch.zeros(n_items if per_item else 0, width, dtype=torch.float64, device=device)

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

    def forward(self, view: View) -> tuple[torch.Tensor, dict]:
        overall = self._global()
        if not self.per_item:
            return frequency_logits(overall, self.regression).to(self.dtype).expand(len(view.target), -1), NO_WEIGHTS
        share = overall / (overall[-1] if self.regression else overall.sum())  # per pseudo-interaction
        counts = self.items.index_select(0, view.ids["item"]) + self.prior * share
        return frequency_logits(counts, self.regression).to(self.dtype).index_select(0, view.inverse["item"]), NO_WEIGHTS

    @torch.no_grad()
    def fit(self, view: View, weights: dict | None) -> None:
        counts = self._counts(view)
        self.total += counts.sum(0)
        if self.per_item:
            summed = torch.zeros(len(view.ids["item"]), counts.shape[1], dtype=counts.dtype, device=counts.device)
            self.items.index_add_(0, view.ids["item"], summed.index_add_(0, view.inverse["item"], counts))

    def tensors(self) -> dict:
        return {"total": self.total, "items": self.items}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.total.copy_(state["reference"]["total"])
        self.items.copy_(state["reference"]["items"])


class Biases(Reference):
    """``mu + b_user + b_item`` in logit space, trained online on the models' own loss."""

    def __init__(self, cfg: Config, sizes: dict, device, dtype):
        super().__init__(cfg, sizes, device, dtype)
        self.task = cfg.task
        self.tables = {s: SparseRows(sizes[s], cfg.n_outputs, cfg.table_optimizer, cfg.rows_lr, 0.0, None, device,
                                     dtype, cfg.adam_betas, cfg.adam_eps) for s in SIDES}
        self.mu = torch.zeros(cfg.n_outputs, dtype=dtype, device=device, requires_grad=True)
        self.mu_opt = self.optimizer([self.mu], cfg.lr)

    def _logits(self, rows: dict, view: View) -> torch.Tensor:
        return self.mu + rows["user"].index_select(0, view.inverse["user"]) \
            + rows["item"].index_select(0, view.inverse["item"])

    @torch.no_grad()
    def forward(self, view: View) -> tuple[torch.Tensor, dict]:
        return self._logits({s: self.tables[s].weight.index_select(0, view.ids[s]) for s in SIDES}, view), NO_WEIGHTS

    def fit(self, view: View, weights: dict | None) -> None:
        rows = {s: self.tables[s].gather(view.ids[s]) for s in SIDES}
        loss = loss_and_correct(self._logits(rows, view), view.target, self.task)[0].mean()
        g_user, g_item, g_mu = torch.autograd.grad(loss, [rows["user"], rows["item"], self.mu])
        self.tables["user"].update(view.ids["user"], self.row_gradient(view, g_user, inplace=True))
        self.tables["item"].update(view.ids["item"], self.row_gradient(view, g_item, inplace=True))
        self.mu.grad = g_mu
        self.mu_opt.step()
        self.mu_opt.zero_grad(set_to_none=True)

    def tensors(self) -> dict:
        return {"tables": {s: self.tables[s].state() for s in SIDES}, "mu": self.mu,
                "optimizer": self.mu_opt.state_dict()}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        super().load_state(state)
        state = state["reference"]
        for s in SIDES:
            for k, v in state["tables"][s].items():
                getattr(self.tables[s], k).copy_(v)
        self.mu.copy_(state["mu"])
        self.mu_opt.load_state_dict(state["optimizer"])


class MF(Reference):
    """Matrix factorisation with biases, ``mu + b_user + b_item + p_user . q_item`` in logit space (the model
    Rendle et al. (2020) found tuned MLP recommenders fail to beat), trained online on the models' own loss.

    The bias tables learn as ``biases``' do (row-wise, ``table_optimizer`` at ``table_lr``); the factor tables, of
    width ``mf_width``, are drawn like the embedding tables (``embedding_init_std``) and learn row-wise at
    ``factor_lr``: a row-wise adaptive step moves every one of an id's factors by about its rate, so the factors
    need a rate of their own. ``embedding_l2`` penalises the factors as it does embeddings. For classification the
    product ``p_user * q_item`` goes through a per-class head (dense, at ``lr`` like ``mu``)."""

    def __init__(self, cfg: Config, sizes: dict, device, dtype):
        super().__init__(cfg, sizes, device, dtype)
        generator = torch.Generator().manual_seed(cfg.seed)
        rows = dict(optimizer=cfg.table_optimizer, device=device, dtype=dtype, betas=cfg.adam_betas, eps=cfg.adam_eps)
        self.biases = {s: SparseRows(sizes[s], cfg.n_outputs, lr=cfg.rows_lr, init_std=0.0, generator=None, **rows)
                       for s in SIDES}
        self.factors = {s: SparseRows(sizes[s], cfg.width, lr=cfg.factor_lr,
                                      init_std=cfg.embedding_init_std, generator=generator, **rows) for s in SIDES}
        self.mu = torch.zeros(cfg.n_outputs, dtype=dtype, device=device, requires_grad=True)
        self.head = None if cfg.task == "regression" else \
            (torch.randn(cfg.width, cfg.n_outputs, generator=generator, dtype=dtype) / cfg.width ** 0.5).to(device) \
            .requires_grad_(True)
        self.dense = [self.mu] if self.head is None else [self.mu, self.head]
        self.dense_opt = self.optimizer(self.dense, cfg.lr)

    def _logits(self, biases: dict, factors: dict, view: View) -> torch.Tensor:
        user, item = (factors[s].index_select(0, view.inverse[s]) for s in SIDES)
        product = user * item
        product = product.sum(1, keepdim=True) if self.head is None else product @ self.head
        return self.mu + biases["user"].index_select(0, view.inverse["user"]) \
            + biases["item"].index_select(0, view.inverse["item"]) + product

    @torch.no_grad()
    def forward(self, view: View) -> tuple[torch.Tensor, dict]:
        return self._logits(*({s: t[s].rows(view.ids[s]) for s in SIDES} for t in (self.biases, self.factors)),
                            view), NO_WEIGHTS

    def fit(self, view: View, weights: dict | None) -> None:
        tables = [self.biases["user"], self.biases["item"], self.factors["user"], self.factors["item"]]
        rows = [t.gather(view.ids[s]) for t, s in zip(tables, SIDES * 2)]
        loss = loss_and_correct(self._logits(dict(zip(SIDES, rows[:2])), dict(zip(SIDES, rows[2:])), view),
                                view.target, self.cfg.task)[0].mean()
        if self.cfg.embedding_l2:  # l2 * mean over samples of |p_user|^2 + |q_item|^2, as embedding_l2 is elsewhere
            squares = sum((view.counts[s].to(r.dtype) * r.square().sum(1)).sum() for s, r in zip(SIDES, rows[2:]))
            loss = loss + self.cfg.embedding_l2 * squares / len(view.target)
        self.guard("training loss", [loss.detach()])
        grads = torch.autograd.grad(loss, [*rows, *self.dense])
        self.guard("gradient of W", grads, clip=True)
        for table, s, g in zip(tables, SIDES * 2, grads):
            table.update(view.ids[s], self.row_gradient(view, g, inplace=True))
        for p, g in zip(self.dense, grads[4:]):
            p.grad = g
        self.dense_opt.step()
        self.dense_opt.zero_grad(set_to_none=True)

    def tensors(self) -> dict:
        return {"biases": {s: self.biases[s].state() for s in SIDES},
                "factors": {s: self.factors[s].state() for s in SIDES},
                "dense": list(self.dense), "optimizer": self.dense_opt.state_dict()}

    def stored(self) -> tuple[list, int]:
        """Every id's biases and factors, and the dense part, as parameters (not their optimizer state)."""
        tables = [*self.biases.values(), *self.factors.values()]
        return [self.tensors()], sum(t.weight.numel() for t in tables) + sum(p.numel() for p in self.dense)

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        super().load_state(state)
        state = state["reference"]
        for s in SIDES:
            self.biases[s].load_state(state["biases"][s])
            self.factors[s].load_state(state["factors"][s])
        for p, saved in zip(self.dense, state["dense"]):
            p.copy_(saved)
        self.dense_opt.load_state_dict(state["optimizer"])
