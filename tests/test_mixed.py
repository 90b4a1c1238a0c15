"""Hard selection's mixed-dimension storage: an id's row lives in exactly one table, moves keep the stream causal,
bytes come from the tensors, the storage's reads and steps match a loop over ids, and hard routing with a
one-hot controller is the single-space model."""
import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

import autoemb_core as ae
from autoemb_core.__main__ import main as cli
from autoemb_core.config import Config
from autoemb_core.interactions import DataError
from autoemb_core.mixed import MixedRows, transfer_map
from autoemb_core.model import SIDES
from autoemb_core.selection import straight_through
from autoemb_core.stream import popularity_before_batch
from autoemb_core.learner import tensor_bytes
from autoemb_core.train import StreamingTrainer

DIMS = (2, 4, 8)
SMALL = dict(dims=DIMS, hidden=(8,), controller_hidden=(6,), batch_size=20, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny")


def storage(n=50, move_init="transfer", optimizer="adagrad", seed=0):
    torch.manual_seed(seed)
    transforms = nn.ModuleList(nn.Linear(d, 8) for d in DIMS).double()
    rows = MixedRows(n, DIMS, transforms, optimizer, 0.3, 0.1, seed, "cpu", torch.float64, move_init=move_init)
    return rows


def favour_largest(trainer, by=1.0):
    """Start the controllers leaning towards the largest space, so that a memory penalty has ids to move down."""
    with torch.no_grad():
        for s in SIDES:
            trainer.learner.selector.controllers[s].net[-1].bias += torch.tensor([0.0] * (len(DIMS) - 1) + [by])
    return trainer


def check_one_table_each(rows: MixedRows, n: int) -> None:
    """Every stored id has one (space, slot); no two ids share one; a used slot is never on a free list; each
    table's used slots plus its free list are its high-water mark, within its capacity."""
    stored = torch.nonzero(rows.space >= 0).squeeze(1)
    pairs = set(zip(rows.space[stored].tolist(), rows.slot[stored].tolist()))
    assert len(pairs) == len(stored)
    for k, table in enumerate(rows.tables):
        mine = {s for space, s in pairs if space == k}
        free = set(rows.free[k].tolist())
        assert len(free) == len(rows.free[k]) and not mine & free
        assert mine | free == set(range(int(rows.used[k])))
        assert int(rows.used[k]) <= len(table.weight)
    assert (rows.slot[rows.space < 0] == -1).all() or (rows.space >= 0).all()


def test_transfer_map_is_the_least_squares_row_and_exact_upwards():
    torch.manual_seed(1)
    small, large = nn.Linear(2, 8).double(), nn.Linear(8, 8).double()
    mid = nn.Linear(4, 8).double()
    r = torch.randn(5, 2, dtype=torch.float64)
    a, c = transfer_map(small, large)
    torch.testing.assert_close(large(r @ a.T + c), small(r))  # a square projection of full rank: exact
    a, c = transfer_map(large, mid)
    x = torch.randn(5, 8, dtype=torch.float64)
    best = torch.linalg.lstsq(mid.weight.detach(), (large(x) - mid.bias).detach().T).solution.T
    torch.testing.assert_close(x @ a.T + c, best)


@pytest.mark.parametrize("move_init", ["transfer", "fresh"])
def test_an_id_lives_in_exactly_one_table_as_ids_arrive_and_move(move_init):
    rows, rng = storage(move_init=move_init), np.random.default_rng(0)
    moved_total = 0
    for round_ in range(30):
        ids = torch.as_tensor(np.unique(rng.integers(0, 50, size=12)))
        target = torch.as_tensor(rng.integers(0, 3, size=len(ids)))
        before_space = rows.space.clone()
        before = rows.rows(torch.arange(50))
        maps = rows.maps()
        moved_total += rows.route(ids, target)
        check_one_table_each(rows, 50)
        assert torch.equal(rows.space[ids].long(), target)
        after = rows.rows(torch.arange(50))
        for i, k in zip(ids.tolist(), target.tolist()):
            old = int(before_space[i])
            block = after[i, rows.offsets[k]:rows.offsets[k + 1]]
            if old == k:
                torch.testing.assert_close(after[i], before[i])  # not moved: untouched
            elif old >= 0 and move_init == "transfer":
                a, c = maps[(old, k)]
                torch.testing.assert_close(block, before[i, rows.offsets[old]:rows.offsets[old + 1]] @ a.T + c)
            elif old >= 0:
                carried = before[i, rows.offsets[k]:rows.offsets[k + 1]]  # what transfer would have given
                assert not torch.allclose(block, carried)
        untouched = torch.as_tensor(sorted(set(range(50)) - set(ids.tolist())), dtype=torch.int64)
        torch.testing.assert_close(after[untouched], before[untouched])
    assert moved_total > 20
    assert rows.moves == moved_total


def test_freed_rows_are_reused_before_a_table_grows():
    rows = storage(200)
    rows.route(torch.arange(100), torch.full((100,), 2))
    capacity, used = len(rows.tables[2].weight), int(rows.used[2])
    rows.route(torch.arange(50), torch.full((50,), 1))  # 50 leave table 2 ...
    assert len(rows.free[2]) == 50
    rows.route(torch.arange(100, 150), torch.full((50,), 2))  # ... and 50 new ids take their slots
    assert len(rows.tables[2].weight) == capacity and int(rows.used[2]) == used and len(rows.free[2]) == 0
    check_one_table_each(rows, 200)


def test_a_table_most_ids_left_gives_its_memory_back():
    rows = storage(1000)
    rows.route(torch.arange(1000), torch.full((1000,), 2))
    kept = rows.rows(torch.arange(900, 1000))
    rows.route(torch.arange(900), torch.full((900,), 0))
    assert len(rows.tables[2].weight) == MixedRows.capacity_for(100) and len(rows.free[2]) == 0
    torch.testing.assert_close(rows.rows(torch.arange(900, 1000)), kept)  # the stayers keep their rows
    check_one_table_each(rows, 1000)


@pytest.mark.parametrize("optimizer", ["adagrad", "adam", "sgd"])
def test_reads_and_steps_match_a_loop_over_ids(optimizer):
    rows = storage(30, optimizer=optimizer)
    rows.route(torch.arange(30), torch.arange(30) % 3)
    ids = torch.tensor([3, 7, 8, 12, 20, 28])
    grad = torch.randn(len(ids), sum(DIMS), dtype=torch.float64)
    maps = rows.maps()
    expected = torch.zeros(len(ids), sum(DIMS), dtype=torch.float64)
    for i, id_ in enumerate(ids.tolist()):  # the read: the stored row in its block, its transfers in the others
        k, slot = int(rows.space[id_]), int(rows.slot[id_])
        stored = rows.tables[k].weight[slot]
        for n in range(3):
            a, c = maps[(k, n)] if n != k else (torch.eye(DIMS[k], dtype=torch.float64), 0.0)
            expected[i, rows.offsets[n]:rows.offsets[n + 1]] = stored @ a.T + c
    torch.testing.assert_close(rows.rows(ids), expected)
    step = rows.virtual_step(ids, grad)
    reference = copy.deepcopy(rows.tables)
    rows.update(ids, grad)
    for i, id_ in enumerate(ids.tolist()):  # the step: the stored block's row-wise step only
        k, slot = int(rows.space[id_]), torch.tensor([int(rows.slot[id_])])
        lo, hi = rows.offsets[k], rows.offsets[k + 1]
        one = reference[k].virtual_step(slot, grad[i:i + 1, lo:hi])
        torch.testing.assert_close(step[i, lo:hi], one[0])
        assert not step[i, :lo].any() and not step[i, hi:].any()
        reference[k].update(slot, grad[i:i + 1, lo:hi])
    for k in range(3):
        for name, value in reference[k].state().items():
            torch.testing.assert_close(getattr(rows.tables[k], name), value)


def test_virtual_step_is_differentiable_in_the_gradient():
    rows = storage(10, optimizer="adam")
    rows.route(torch.arange(10), torch.arange(10) % 3)
    grad = torch.randn(4, sum(DIMS), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g: rows.virtual_step(torch.tensor([0, 1, 2, 5]), g), (grad,))


def test_straight_through_is_one_hot_forward_and_soft_backward():
    logits = torch.randn(5, 3, requires_grad=True)
    space = torch.tensor([0, 2, 1, 1, 0])
    hard = straight_through(torch.softmax(logits, 1), space)
    assert torch.equal(hard.detach(), torch.eye(3)[space])
    probe = torch.randn(5, 3)
    g_hard = torch.autograd.grad((hard * probe).sum(), logits)[0]
    g_soft = torch.autograd.grad((torch.softmax(logits, 1) * probe).sum(), logits)[0]
    torch.testing.assert_close(g_hard, g_soft)


def test_bytes_are_counted_from_the_tensors(tiny):
    data = tiny.head(1500)
    trainer = StreamingTrainer(data, Config(method="autoemb-hard", **{**SMALL, "batch_size": 100}))
    learner = trainer.learner
    n_ids = data.n_users + data.n_items
    empty = learner.memory()["embedding_bytes"]
    transforms = [p for k, p in learner.dense.items() if k.startswith(("proj.", "bn."))]
    buffers = [b for k, b in learner.dlrs.named_buffers() if k.startswith("bn.")]
    assert empty == sum(p.numel() for p in transforms) * 4 + sum(b.nbytes for b in buffers) + n_ids * (1 + 4)
    trainer.run()
    memory = learner.memory()
    tables = sum(len(t.weight) * t.weight.shape[1] * 4 * 2 for s in SIDES for t in learner.tables[s].tables)
    free = sum(8 * len(f) for s in SIDES for f in learner.tables[s].free)
    state = tensor_bytes([learner.dlrs_opt.state[p] for p in transforms])  # the transforms' Adam moments, now
    assert memory["embedding_bytes"] == empty + tables + free + state
    stored = sum(DIMS[int(k)] for s in SIDES for k in learner.tables[s].space.tolist() if k >= 0)
    assert memory["embedding_parameters"] == stored + sum(p.numel() for p in transforms)
    fse = StreamingTrainer(data, Config(method="fse", **{**SMALL, "batch_size": 100})).learner.memory()
    assert fse["embedding_bytes"] == n_ids * sum(DIMS) * 4 * 2


@pytest.mark.parametrize("k", [0, 1, 2])
def test_hard_routing_with_a_one_hot_controller_is_the_single_space_model(tiny, k):
    """autoemb-hard whose controllers always choose space k streams exactly as the AutoEmb architecture with
    every weight on space k and full storage (popularity-rule's selector, told to pick k), from the same rows."""
    data = tiny.head(400)
    hard_run = StreamingTrainer(data, Config(method="autoemb-hard", **SMALL), dtype=torch.float64)
    single_run = StreamingTrainer(data, Config(method="popularity-rule", **SMALL), dtype=torch.float64)
    hard, single = hard_run.learner, single_run.learner
    single.selector.rule = lambda side, ids: torch.full_like(ids, k)
    with torch.no_grad():
        for s in SIDES:
            last = hard.selector.controllers[s].net[-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor([30.0 if n == k else 0.0 for n in range(3)]))
            ids = torch.arange(len(hard.tables[s].space))
            hard.tables[s].route(ids, torch.full_like(ids, k))
            lo, hi = hard.tables[s].offsets[k], hard.tables[s].offsets[k + 1]
            single.tables[s].weight[:, lo:hi] = hard.tables[s].rows(ids)[:, lo:hi]
    a, b = hard_run.run(), single_run.run()
    assert sum(t.moves for t in hard.tables.values()) == 0
    np.testing.assert_allclose(a.samples["loss"], b.samples["loss"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.batches["loss"], b.batches["loss"], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("settings", [dict(method="autoemb-hard", memory_penalty=3.0, controller_lr=0.05),
                                      dict(method="popularity-rule", storage="mixed", popularity_thresholds=(1, 3))])
def test_moving_ids_keeps_the_stream_causal(tiny, settings, trainers_before_batch):
    """Flip the labels from batch 3 on: the routing, the rows and the prediction of batch 3 are unchanged,
    ids have moved by then, and the popularity rule routes on the popularity before each batch."""
    data = tiny.head(400)
    cfg = Config(**SMALL, **settings)
    a, b = trainers_before_batch(data, cfg, prepare=lambda t: cfg.bilevel and favour_largest(t, 0.3))
    view_a, view_b = a.stream.view(slice(60, 80)), b.stream.view(slice(60, 80))
    batches, (a, b) = a.batches, (a.learner, b.learner)
    a.route(view_a)
    b.route(view_b)
    for s in SIDES:
        assert torch.equal(a.tables[s].space, b.tables[s].space) and torch.equal(a.tables[s].slot, b.tables[s].slot)
        ids = torch.arange(len(a.tables[s].space))
        assert torch.equal(a.tables[s].rows(ids), b.tables[s].rows(ids))
    assert sum(int(t.moves) for t in a.tables.values()) > 0
    torch.testing.assert_close(a.predict(view_a)[0], b.predict(view_b)[0], rtol=0, atol=0)
    if cfg.method == "popularity-rule":
        before = {s: popularity_before_batch(getattr(data, s)[:80], batches)[60:80] for s in SIDES}
        for s in SIDES:
            expected = torch.bucketize(torch.as_tensor(before[s]), torch.tensor([1, 3]), right=True)
            assert torch.equal(a.tables[s].space[torch.as_tensor(getattr(data, s)[60:80])].long(), expected)


def test_a_memory_penalty_stores_ids_at_smaller_sizes(tiny):
    data = tiny.head(3000)
    stored = {}
    for penalty in (0.0, 1.0):
        trainer = favour_largest(StreamingTrainer(data, Config(method="autoemb-hard", memory_penalty=penalty,
                                                               controller_lr=0.01, **{**SMALL, "batch_size": 100})))
        trainer.run()
        stored[penalty] = trainer.learner.memory()["embedding_parameters"]
    assert stored[1.0] < 0.7 * stored[0.0]


def test_mixed_storage_is_for_one_space_per_id():
    with pytest.raises(DataError, match="storage=mixed"):
        Config(method="fse", storage="mixed")
    assert Config(method="autoemb-hard").mixed and Config(method="popularity-rule", storage="mixed").mixed
    assert Config(method="fse", fse_width=16).width == 16 and Config(method="fse").width == 146


def test_hard_autoemb_runs_from_the_command_line(tmp_path, capsys):
    assert cli(["run", "--dataset", "synthetic-tiny", "--method", "autoemb-hard", "--memory-penalty", "0.1",
                "--max-interactions", "2000", "--results-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "embedding bytes" in out and "stored at each size" in out
    (folder,) = tmp_path.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["config"]["memory_penalty"] == 0.1 and summary["method"] == "autoemb-hard"
    assert sum(summary["ids_per_space"]["user"].values()) == summary["n_users"]
