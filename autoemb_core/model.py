"""The enhanced DLRS (paper §2.2, eq. 1-5), its controllers (§2.3) and the row-sparse embedding tables.

W is the DLRS: the two embedding tables plus the dense transforms and head. Theta produces the selection
weights: two controllers (autoemb, sam) or free per-id logits (darts). Tables live outside autograd as
:class:`SparseRows` so that a step gathers, and updates, only the rows its batches use.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config

SIDES = ("user", "item")


class SparseRows:
    """A table of rows with its own row-wise optimizer: lazy Adam (moments and step count kept per row,
    so a row's bias correction counts only the steps it was updated in) or plain SGD."""

    def __init__(self, n: int, width: int, cfg: Config, lr: float, init_std: float, generator, device, dtype):
        self.weight = torch.randn(n, width, generator=generator, dtype=dtype).mul_(init_std).to(device) \
            if init_std > 0 else torch.zeros(n, width, dtype=dtype, device=device)
        self.lr, self.adam = lr, cfg.optimizer == "adam"
        self.beta1, self.beta2 = cfg.adam_betas
        self.eps = cfg.adam_eps
        if self.adam:
            self.m = torch.zeros_like(self.weight)
            self.v = torch.zeros_like(self.weight)
            self.steps = torch.zeros(n, dtype=torch.int64, device=device)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """A leaf copy of ``rows`` to differentiate through."""
        return self.weight.index_select(0, rows).requires_grad_(True)

    @torch.no_grad()
    def update(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Descend ``grad`` on the given unique ``rows`` only."""
        if not self.adam:
            self.weight.index_add_(0, rows, grad, alpha=-self.lr)
            return
        steps = self.steps.index_select(0, rows) + 1
        m = self.m.index_select(0, rows).mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        v = self.v.index_select(0, rows).mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        self.steps.index_copy_(0, rows, steps)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        steps = steps.to(grad.dtype).unsqueeze(1)
        m_hat = m / (1 - self.beta1 ** steps)
        v_hat = v / (1 - self.beta2 ** steps)
        self.weight.index_add_(0, rows, m_hat / (v_hat.sqrt() + self.eps), alpha=-self.lr)

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ("weight", "m", "v", "steps") if hasattr(self, k)}


def mlp(sizes: list[int], activation=nn.Tanh) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DLRS(nn.Module):
    """The dense part of W: per-space transforms (eq. 1-2) for each side, and the hidden and output layers
    (eq. 4-5). With ``cfg.selecting`` False (fse, fixed-d) the table rows go straight to the head."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.dims, self.selecting, self.mean = cfg.dims, cfg.selecting, cfg.selection == "mean"
        if self.selecting:
            out = cfg.dims[-1]
            self.proj = nn.ModuleDict({s: nn.ModuleList(nn.Linear(d, out) for d in cfg.dims) for s in SIDES})
            n_bn = 1 if cfg.shared_batchnorm else len(cfg.dims)
            self.bn = nn.ModuleDict({s: nn.ModuleList(nn.BatchNorm1d(out) for _ in range(n_bn)) for s in SIDES})
            width = out
        else:
            width = cfg.width
        self.head = mlp([2 * width, *cfg.hidden, cfg.n_outputs])

    def represent(self, side: str, rows: torch.Tensor, weights: torch.Tensor | None, bn_mode: str) -> torch.Tensor:
        """Eq. 1, 2 and 7: transform each space to d_N, normalize, squash, and mix with ``weights``."""
        if not self.selecting:
            return rows
        spaces = []
        for n, part in enumerate(rows.split(self.dims, dim=1)):
            bn = self.bn[side][min(n, len(self.bn[side]) - 1)]
            spaces.append(torch.tanh(batch_norm(bn, self.proj[side][n](part), bn_mode)))
        mixed = (weights.unsqueeze(-1) * torch.stack(spaces, dim=1)).sum(dim=1)
        return mixed / len(self.dims) if self.mean else mixed

    def forward(self, user_rows, item_rows, user_weights, item_weights, bn_mode: str = "train") -> torch.Tensor:
        h0 = torch.cat([self.represent("user", user_rows, user_weights, bn_mode),
                        self.represent("item", item_rows, item_weights, bn_mode)], dim=1)
        return self.head(h0)


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, mode: str) -> torch.Tensor:
    """``train``: batch statistics, running statistics updated; ``batch``: batch statistics, nothing
    updated (virtual steps); ``running``: the running statistics (prediction)."""
    if mode == "running":
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if mode == "train":
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, True, bn.momentum, bn.eps)
    return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)


class Controller(nn.Module):
    """Popularity and context -> softmax over the N embedding spaces (Figure 4)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.net = mlp([cfg.controller_features, *cfg.controller_hidden, len(cfg.dims)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(features), dim=-1)


def controller_features(popularity: torch.Tensor, last_weights: torch.Tensor, last_loss: torch.Tensor,
                        buckets: int) -> torch.Tensor:
    """One-hot of ``min(floor(log2(1 + popularity)), buckets - 1)``, then last weights and last loss."""
    bucket = torch.floor(torch.log2(1.0 + popularity.to(torch.float64))).long().clamp_(max=buckets - 1)
    onehot = F.one_hot(bucket, buckets).to(last_weights.dtype)
    return torch.cat([onehot, last_weights, last_loss.unsqueeze(1)], dim=1)


def loss_and_correct(logits: torch.Tensor, target: torch.Tensor, task: str):
    """Per-sample loss (MSE on the sigmoid, or cross-entropy) and whether the prediction was right."""
    if task == "regression":
        prob = torch.sigmoid(logits.squeeze(1))
        return (prob - target) ** 2, (prob > 0.5) == (target > 0.5)
    return F.cross_entropy(logits, target, reduction="none"), logits.argmax(1) == target
