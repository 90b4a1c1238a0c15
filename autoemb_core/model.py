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


def optimizer_step(kind: str, grad: torch.Tensor, state: dict, lr: float, betas=(0.9, 0.999),
                   eps: float = 1e-8) -> torch.Tensor:
    """The step ``delta`` (W <- W - delta) that optimizer ``kind`` takes for ``grad`` from its ``state``, as a
    pure, differentiable function of ``grad``: the unrolled step of eq. 9 and the real update share it.

    ``state`` holds ``m``, ``v`` and ``steps`` (adam: per-element or per-row step counts already taken) or
    ``sum`` (adagrad), each broadcastable to ``grad``; sgd needs none. The square root is taken of a value
    clamped at 1e-30 so that its derivative stays finite where a moment is exactly 0 (the step changes by
    at most 1e-15 against eps 1e-8)."""
    if kind == "sgd":
        return grad * lr
    if kind == "adagrad":
        return grad * lr / ((state["sum"] + grad * grad).clamp_min(1e-30).sqrt() + eps)
    if kind != "adam":
        raise ValueError(f"unknown optimizer {kind!r}")
    beta1, beta2 = betas
    t = state["steps"] + 1
    m = state["m"] * beta1 + grad * (1 - beta1)
    v = state["v"] * beta2 + grad * grad * (1 - beta2)
    return m * (lr / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).clamp_min(1e-30).sqrt() + eps)


def torch_optimizer_state(kind: str, optimizer: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    """The state torch's ``optimizer`` (Adam, Adagrad or SGD) keeps for ``p``, in :func:`optimizer_step`'s
    terms; Adam's is zeros before its first step."""
    state = optimizer.state.get(p) or {}
    if kind == "adam":
        if not state:
            return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "steps": 0.0}
        return {"m": state["exp_avg"], "v": state["exp_avg_sq"], "steps": float(state["step"])}
    if kind == "adagrad":
        return {"sum": state["sum"]}
    return {}


class SparseRows:
    """A table of rows with its own row-wise optimizer: lazy Adam (moments and step count kept per row,
    so a row's bias correction counts only the steps it was updated in), row-wise Adagrad (per-element
    sums of squared gradients, the usual optimizer for sparse embeddings) or plain SGD."""

    def __init__(self, n: int, width: int, optimizer: str, lr: float, init_std: float, generator, device, dtype,
                 betas=(0.9, 0.999), eps: float = 1e-8):
        self.weight = torch.randn(n, width, generator=generator, dtype=dtype).mul_(init_std).to(device) \
            if init_std > 0 else torch.zeros(n, width, dtype=dtype, device=device)
        self.optimizer, self.lr = optimizer, lr
        self.adam = optimizer == "adam"
        self.beta1, self.beta2 = betas
        self.eps = eps
        if self.adam:
            self.m = torch.zeros_like(self.weight)
            self.v = torch.zeros_like(self.weight)
            self.steps = torch.zeros(n, dtype=torch.int64, device=device)
        elif optimizer == "adagrad":
            self.sum = torch.zeros_like(self.weight)

    def rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.weight.index_select(0, rows)

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """A leaf copy of ``rows`` to differentiate through."""
        return self.rows(rows).requires_grad_(True)

    def rows_state(self, rows: torch.Tensor) -> dict:
        """The optimizer state of ``rows``, for :func:`optimizer_step`."""
        if self.adam:
            return {"m": self.m.index_select(0, rows), "v": self.v.index_select(0, rows),
                    "steps": self.steps.index_select(0, rows).to(self.weight.dtype).unsqueeze(1)}
        if self.optimizer == "adagrad":
            return {"sum": self.sum.index_select(0, rows)}
        return {}

    def virtual_step(self, rows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The step :meth:`update` would take for ``grad``, differentiable in ``grad``; nothing changes."""
        return optimizer_step(self.optimizer, grad, self.rows_state(rows), self.lr, (self.beta1, self.beta2),
                              self.eps)

    @torch.no_grad()
    def update(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Descend ``grad`` on the given unique ``rows`` only."""
        if self.optimizer == "sgd":
            self.weight.index_add_(0, rows, grad, alpha=-self.lr)
            return
        if self.optimizer == "adagrad":
            total = self.sum.index_select(0, rows).addcmul_(grad, grad)
            self.sum.index_copy_(0, rows, total)
            self.weight.index_add_(0, rows, grad / total.sqrt_().add_(self.eps), alpha=-self.lr)
            return
        steps = self.steps.index_select(0, rows) + 1
        m = self.m.index_select(0, rows).lerp_(grad, 1 - self.beta1)
        v = self.v.index_select(0, rows).mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        self.steps.index_copy_(0, rows, steps)
        self.m.index_copy_(0, rows, m)
        self.v.index_copy_(0, rows, v)
        steps = steps.to(grad.dtype).unsqueeze(1)  # per-row bias corrections, as in torch's Adam
        denominator = v.div_(1 - self.beta2 ** steps).sqrt_().add_(self.eps)
        step_size = (1 - self.beta1 ** steps).reciprocal_().mul_(-self.lr)
        self.weight.index_add_(0, rows, m.div_(denominator).mul_(step_size))

    def state(self) -> dict:
        return {k: getattr(self, k) for k in ("weight", "m", "v", "steps", "sum") if hasattr(self, k)}

    allocated = state  # every tensor the table holds

    def stored_parameters(self) -> int:
        return self.weight.numel()

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)


def mlp(sizes: list[int], activation=nn.Tanh) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DLRS(nn.Module):
    """The dense part of W: per-space transforms (eq. 1-2) for each side, and the hidden and output layers
    (eq. 4-5). With ``cfg.selecting`` False (fse, fixed-d) the table rows go straight to the head.

    Each side arrives as ``(rows, weights, inverse, counts)``: one row and one weight vector per unique id,
    the per-sample index into them, and how many samples each id has. With ``fast`` the transforms and each
    side's share of the first hidden layer run once per unique id, with BatchNorm statistics weighted by
    ``counts`` (the same function as per-sample BatchNorm); otherwise rows are expanded to samples first and
    torch's own BatchNorm and tanh are used. ``head_batchnorm`` adds ESAPN's BatchNorm to the head (its input and
    hidden layers), ``input_batchnorm`` to its input alone.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.dims, self.selecting, self.mean, self.fast = cfg.dims, cfg.selecting, cfg.selection == "mean", cfg.fast_path
        self.normalize, self.squash = cfg.transform in ("bn-tanh", "bn"), cfg.transform in ("bn-tanh", "tanh")
        if self.selecting:
            out = cfg.dims[-1]
            self.proj = nn.ModuleDict({s: nn.ModuleList(nn.Linear(d, out) for d in cfg.dims) for s in SIDES})
            n_bn = (1 if cfg.shared_batchnorm else len(cfg.dims)) if self.normalize else 0
            self.bn = nn.ModuleDict({s: nn.ModuleList(nn.BatchNorm1d(out) for _ in range(n_bn)) for s in SIDES})
            width = out
        else:
            width = cfg.width
        self.head = mlp([2 * width, *cfg.hidden, cfg.n_outputs], FastTanh if self.fast else nn.Tanh)
        self.head_bn = nn.ModuleDict({"user": nn.BatchNorm1d(width), "item": nn.BatchNorm1d(width),
                                      "hidden": nn.ModuleList(nn.BatchNorm1d(h) for h in cfg.hidden)
                                      if cfg.head_batchnorm else nn.ModuleList()}) \
            if cfg.head_batchnorm or cfg.input_batchnorm else None

    def represent(self, side: str, rows, weights, inverse, counts, bn_mode: str) -> torch.Tensor:
        """Eq. 1, 2 and 7: transform each space to d_N, normalize and squash (as ``transform`` says), and mix
        with ``weights``; one row per unique id with ``fast``, else one per sample."""
        if not self.selecting:
            return rows if self.fast else rows.index_select(0, inverse)
        if not self.fast:
            rows, weights, counts = rows.index_select(0, inverse), weights.index_select(0, inverse), None
        squash = tanh if self.fast else torch.tanh
        spaces = []
        for n, part in enumerate(rows.split(self.dims, dim=1)):
            space = self.proj[side][n](part)
            if self.normalize:
                space = batch_norm(self.bn[side][min(n, len(self.bn[side]) - 1)], space, bn_mode, counts, len(inverse))
            spaces.append(squash(space) if self.squash else space)
        mixed = torch.bmm(weights.unsqueeze(1), torch.stack(spaces, dim=1)).squeeze(1)
        return mixed / len(self.dims) if self.mean else mixed

    def forward(self, user: tuple, item: tuple, bn_mode: str = "train") -> torch.Tensor:
        u, i = self.represent("user", *user, bn_mode), self.represent("item", *item, bn_mode)
        samples = len(user[2])
        if self.head_bn is not None:  # BatchNorm of [u; i] is each side's BatchNorm: per unique id with ``fast``
            u, i = (batch_norm(self.head_bn[s], x, bn_mode, side[3] if self.fast else None, samples)
                    for s, x, side in (("user", u, user), ("item", i, item)))
        first = self.head[0]
        if not self.fast:
            hidden = first(torch.cat([u, i], dim=1))
        else:  # W1 [u; i] + b = (W1_user u)[user of sample] + (W1_item i + b)[item of sample]
            width = u.shape[1]
            hidden = F.linear(u, first.weight[:, :width]).index_select(0, user[2]) \
                + F.linear(i, first.weight[:, width:], first.bias).index_select(0, item[2])
        if self.head_bn is None or not len(self.head_bn["hidden"]):
            return self.head[1:](hidden)
        for n, bn in enumerate(self.head_bn["hidden"]):  # Linear -> BatchNorm -> tanh, then the next Linear
            hidden = self.head[2 * n + 2](self.head[2 * n + 1](batch_norm(bn, hidden, bn_mode)))
        return hidden


def batch_norm(bn: nn.BatchNorm1d, x: torch.Tensor, mode: str, counts: torch.Tensor | None = None,
               samples: int | None = None) -> torch.Tensor:
    """``train``: batch statistics, running statistics updated; ``batch``: batch statistics, nothing
    updated (virtual steps); ``running``: the running statistics (prediction).

    With ``counts``, row i of ``x`` stands for ``counts[i]`` of the batch's ``samples`` samples: the statistics
    are those of the expanded batch, computed on the unique rows. A batch of one sample normalizes to the
    bias and leaves the running statistics alone (torch's BatchNorm refuses it)."""
    if mode == "running":
        return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if counts is None and len(x) > 1:
        track = mode == "train"
        return F.batch_norm(x, bn.running_mean if track else None, bn.running_var if track else None,
                            bn.weight, bn.bias, True, bn.momentum if track else 0.0, bn.eps)
    share = (torch.ones(len(x), dtype=x.dtype, device=x.device) if counts is None else counts.to(x.dtype)) / samples
    share = share.unsqueeze(1)
    mean = (share * x).sum(0)
    centred = x - mean
    var = (share * centred * centred).sum(0)
    if mode == "train" and samples > 1:
        with torch.no_grad():
            bn.running_mean.lerp_(mean, bn.momentum)
            bn.running_var.lerp_(var * (samples / (samples - 1)), bn.momentum)
    return centred * (bn.weight * torch.rsqrt(var + bn.eps)) + bn.bias


class _Tanh(torch.autograd.Function):
    """tanh(x) = 2 sigmoid(2x) - 1: twice as fast as torch.tanh on CPU, error below 2e-7; the backward is
    torch's own (differentiable, so double backpropagation works)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x * 2).mul_(2).add_(-1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


tanh = _Tanh.apply


class FastTanh(nn.Module):
    def forward(self, x):
        return tanh(x)


class Controller(nn.Module):
    """Popularity and context -> softmax over the N embedding spaces (Figure 4)."""

    def __init__(self, cfg: Config):
        super().__init__()
        self.net = mlp([cfg.controller_features, *cfg.controller_hidden, len(cfg.dims)],
                       FastTanh if cfg.fast_path else nn.Tanh)

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
