"""Mixed-dimension embeddings for hard selection: one table per candidate size, and each id one row in one of them.

An id holds a row only in the table of its chosen space, found through the id -> (space, slot) map. When the
choice for an id moves (its popularity grew, the controller changed its mind), the id moves: its old slot goes on
that table's free list, reused by the next id to arrive there (a table that is mostly free is compacted and
shrunk), and its new row starts from the old row carried
through the transforms (``transfer``: the least-squares row of the new space whose projection is closest to the old
row's, exact upwards when the larger projection has full rank) or from a fresh random row (``fresh``).

To the trainer a :class:`MixedRows` looks like a full table of ``sum(dims)`` columns: :meth:`gather` gives, per id,
its stored row in its own block and that row's transfers in the others (constants), so the soft weights of the
straight-through estimator have every space to differentiate; :meth:`update` and :meth:`virtual_step` move only the
stored block, and nothing else is kept.
"""
from __future__ import annotations

import numpy as np
import torch

from .model import SparseRows


def transfer_map(source: torch.nn.Linear, target: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, c)`` with ``x = r @ A.T + c`` the row of ``target``'s space whose projection ``target(x)`` is closest,
    in least squares, to ``source(r)``: A = pinv(P_t) P_s, c = pinv(P_t) (b_s - b_t)."""
    with torch.no_grad():
        pinv = torch.linalg.pinv(target.weight.double())
        a = pinv @ source.weight.double()
        c = pinv @ (source.bias.double() - target.bias.double())
    return a.to(source.weight.dtype), c.to(source.weight.dtype)


class MixedRows:
    """One side's embeddings at mixed dimensions (module docstring); the :class:`SparseRows` interface over the
    concatenated ``sum(dims)`` columns, plus :meth:`route`."""

    @staticmethod
    def capacity_for(rows: int) -> int:
        """The capacity a table of ``rows`` live rows is given when it grows or shrinks: a quarter spare, plus 16."""
        return rows + rows // 4 + 16

    def __init__(self, n_ids: int, dims, transforms, optimizer: str, lr: float, init_std: float, seed: int, device,
                 dtype, betas=(0.9, 0.999), eps: float = 1e-8, move_init: str = "transfer"):
        self.dims, self.init_std, self.move_init, self.device, self.dtype = tuple(dims), init_std, move_init, device, dtype
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)]).tolist()
        self.width = self.offsets[-1]
        self.tables = [SparseRows(0, d, optimizer, lr, 0.0, None, device, dtype, betas, eps) for d in self.dims]
        self.space = torch.full((n_ids,), -1, dtype=torch.int8, device=device)  # -1: not stored yet
        self.slot = torch.full((n_ids,), -1, dtype=torch.int32, device=device)
        self.free = [torch.zeros(0, dtype=torch.int64, device=device) for _ in self.dims]
        self.used = torch.zeros(len(self.dims), dtype=torch.int64)  # high-water mark of each table
        self.moves = torch.zeros((), dtype=torch.int64)  # ids moved to another space so far
        self.generator = torch.Generator().manual_seed(seed)
        self.transforms = transforms  # the side's ModuleList of projections, one per space
        self._maps, self._maps_version = {}, None

    # -- reading --------------------------------------------------------------------------------
    def maps(self) -> dict:
        """``(k, n) -> (A, c)`` for every pair of spaces, cached until the transforms change (told by their sums
        and sums of squares: fused Adam updates in place without bumping a tensor's version)."""
        with torch.no_grad():
            version = tuple(torch.stack([v for p in self.transforms.parameters() for v in
                                         (p.double().sum(), p.double().square().sum())]).tolist())
        if version != self._maps_version:
            self._maps = {(k, n): transfer_map(self.transforms[k], self.transforms[n])
                          for k in range(len(self.dims)) for n in range(len(self.dims)) if k != n}
            self._maps_version = version
        return self._maps

    def groups(self, ids: torch.Tensor):
        """``(space, positions in ids, slots)`` for each space that holds some of ``ids``."""
        space = self.space.index_select(0, ids)
        for k in range(len(self.dims)):
            where = torch.nonzero(space == k).squeeze(1)
            if len(where):
                yield k, where, self.slot.index_select(0, ids.index_select(0, where)).long()

    @torch.no_grad()
    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``[len(ids), sum(dims)]``: each id's stored row in its block, its transfers in the others; an id not
        stored yet reads as a zero row of the smallest space."""
        out = torch.zeros(len(ids), self.width, dtype=self.dtype, device=self.device)
        if not len(ids):
            return out
        maps = self.maps()
        for k, where, slots in self.groups(ids):
            stored = self.tables[k].weight.index_select(0, slots)
            for n in range(len(self.dims)):
                block = stored if n == k else torch.addmm(maps[(k, n)][1], stored, maps[(k, n)][0].T)
                out[where, self.offsets[n]:self.offsets[n + 1]] = block
        return out

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """A leaf copy of :meth:`rows` to differentiate through."""
        return self.rows(ids).requires_grad_(True)

    def stored_space(self, ids: torch.Tensor) -> torch.Tensor:
        return self.space.index_select(0, ids).long()

    # -- learning -------------------------------------------------------------------------------
    def virtual_step(self, ids: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The step :meth:`update` would take for ``grad``: the stored block's row-wise step, 0 elsewhere;
        differentiable in ``grad``."""
        blocks = [torch.zeros(len(ids), d, dtype=grad.dtype, device=grad.device) for d in self.dims]
        for k, where, slots in self.groups(ids):
            part = grad.index_select(0, where)[:, self.offsets[k]:self.offsets[k + 1]]
            blocks[k] = blocks[k].index_copy(0, where, self.tables[k].virtual_step(slots, part))
        return torch.cat(blocks, dim=1)

    @torch.no_grad()
    def update(self, ids: torch.Tensor, grad: torch.Tensor) -> None:
        """Descend the stored block of ``grad`` for each of the unique ``ids``; the transfers' gradients are dropped."""
        for k, where, slots in self.groups(ids):
            self.tables[k].update(slots, grad.index_select(0, where)[:, self.offsets[k]:self.offsets[k + 1]])

    # -- moving ---------------------------------------------------------------------------------
    @torch.no_grad()
    def route(self, ids: torch.Tensor, spaces: torch.Tensor) -> int:
        """Store each of the unique ``ids`` in ``spaces`` (same length): a new id gets a fresh row, an id whose
        space changed moves. Returns how many ids moved."""
        old = self.space.index_select(0, ids).long()
        change = torch.nonzero(old != spaces).squeeze(1)
        if not len(change):
            return 0
        ids, old, new = ids.index_select(0, change), old.index_select(0, change), spaces.index_select(0, change)
        start = torch.randn(len(ids), self.dims[-1], generator=self.generator, dtype=self.dtype).mul_(self.init_std)
        start = start.to(self.device)
        rows = start  # fresh rows, replaced below by the carried ones
        moving = old >= 0
        maps = self.maps() if self.move_init == "transfer" else None
        for k, where, slots in self.groups(ids):  # leave the old tables, carrying the rows
            if maps is not None:
                stored, targets = self.tables[k].weight.index_select(0, slots), new.index_select(0, where)
                for n in targets.unique().tolist():
                    pick = targets == n
                    a, c = maps[(k, n)]
                    rows[where[pick], :self.dims[n]] = torch.addmm(c, stored[pick], a.T)
            self.free[k] = torch.cat([self.free[k], slots])
        for n in new.unique().tolist():  # enter the new tables
            where = torch.nonzero(new == n).squeeze(1)
            slots = self.allocate(n, len(where))
            table = self.tables[n]
            table.weight.index_copy_(0, slots, rows.index_select(0, where)[:, :self.dims[n]])
            for name, value in table.state().items():  # the new row's optimizer state starts afresh
                if name != "weight":
                    value.index_fill_(0, slots, 0)
            self.space.index_fill_(0, ids.index_select(0, where), n)
            self.slot.index_copy_(0, ids.index_select(0, where), slots.to(torch.int32))
        for k in old[moving].unique().tolist():  # a table that lost rows shrinks when most of it is free
            live = int(self.used[k]) - len(self.free[k])
            if len(self.tables[k].weight) > 2 * live + 64:
                self.compact(k)
        self.moves += int(moving.sum())
        return int(moving.sum())

    def compact(self, k: int) -> None:
        """Move table ``k``'s live rows to its front, in slot order, and shrink it to :meth:`capacity_for` them:
        the memory its departed ids held is given back."""
        ids = torch.nonzero(self.space == k).squeeze(1)
        slots, order = self.slot.index_select(0, ids).long().sort()
        ids = ids.index_select(0, order)
        table = self.tables[k]
        capacity = self.capacity_for(len(ids))
        for name, value in table.state().items():
            smaller = value.new_zeros((capacity, *value.shape[1:]))
            smaller[:len(ids)] = value.index_select(0, slots)
            setattr(table, name, smaller)
        self.slot.index_copy_(0, ids, torch.arange(len(ids), dtype=torch.int32, device=self.device))
        self.free[k] = self.free[k][:0]
        self.used[k] = len(ids)

    def allocate(self, k: int, count: int) -> torch.Tensor:
        """``count`` free slots of table ``k``: freed ones first, then new ones, growing the table if it is full."""
        reused = self.free[k][-count:] if count else self.free[k][:0]
        self.free[k] = self.free[k][:len(self.free[k]) - len(reused)]
        extra = count - len(reused)
        first = int(self.used[k])
        self.used[k] += extra
        table = self.tables[k]
        capacity = len(table.weight)
        if int(self.used[k]) > capacity:
            grown = self.capacity_for(int(self.used[k]))
            for name, value in table.state().items():
                bigger = value.new_zeros((grown, *value.shape[1:]))
                bigger[:capacity] = value
                setattr(table, name, bigger)
        return torch.cat([reused, torch.arange(first, first + extra, device=self.device)])

    # -- bookkeeping ----------------------------------------------------------------------------
    def ids_per_space(self) -> list[int]:
        return torch.bincount(self.space[self.space >= 0].long(), minlength=len(self.dims)).tolist()

    def stored_parameters(self) -> int:
        """The literature's count: sum over stored ids of their space's size."""
        return sum(c * d for c, d in zip(self.ids_per_space(), self.dims))

    def allocated(self) -> dict:
        """Every tensor this storage holds for the embeddings: the tables at their capacity with their optimizer
        state, the id map and the free lists."""
        return {"tables": [t.state() for t in self.tables], "space": self.space, "slot": self.slot, "free": self.free}

    def state(self) -> dict:
        return {**self.allocated(), "used": self.used, "moves": self.moves, "generator": self.generator.get_state()}

    @torch.no_grad()
    def load_state(self, state: dict) -> None:
        for table, saved in zip(self.tables, state["tables"]):
            for name, value in saved.items():
                setattr(table, name, value.clone())
        self.space, self.slot = state["space"].clone(), state["slot"].clone()
        self.free = [f.clone() for f in state["free"]]
        self.used, self.moves = state["used"].clone(), state["moves"].clone()
        self.generator.set_state(state["generator"].cpu())
