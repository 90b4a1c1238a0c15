"""How a predicted batch is learned: ``train_passes``, ``train_microbatch`` and ``row_gradient``, for every
method; against a naive per-sample loop, causal, deterministic, and Theta's step still one per batch."""
import numpy as np
import pytest
import torch

import autoemb_core as ae
from autoemb_core.config import Config
from autoemb_core.learner import tensors_in
from autoemb_core.methods import METHODS
from autoemb_core.model import loss_and_correct
from autoemb_core.stream import in_batch_counts, make_batches, microbatches
from autoemb_core.train import StreamingTrainer, run

SMALL = dict(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=20, progress=False)
LEARNING = dict(train_passes=2, train_microbatch=7, row_gradient="sum")


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny")


def test_microbatches_cover_the_batch_in_order():
    assert microbatches(20, None) == [(0, 20)]
    assert microbatches(20, 20) == microbatches(20, 500) == [(0, 20)]
    assert microbatches(20, 7) == [(0, 7), (7, 14), (14, 20)]
    assert microbatches(3, 1) == [(0, 1), (1, 2), (2, 3)]
    assert microbatches(0, 5) == [(0, 0)]


def naive_biases(data, batch_size: int, passes: int, microbatch: int | None, row_gradient: str, table_lr: float,
                 lr: float) -> tuple[np.ndarray, dict]:
    """``mu + b_user + b_item`` under the sigmoid, by hand in float64: each batch predicted whole, then learned
    in ``passes`` passes over chunks of ``microbatch`` in stream order, one plain SGD step per chunk (a row's
    gradient: its samples' dloss/dz summed, over the chunk's size for ``mean``; mu's: the chunk's mean)."""
    y = (data.rating > 3.5).astype(np.float64)
    b = {"user": np.zeros(data.n_users), "item": np.zeros(data.n_items)}
    mu, losses = 0.0, []
    for lo in range(0, len(y), batch_size):
        hi = min(lo + batch_size, len(y))
        z = mu + b["user"][data.user[lo:hi]] + b["item"][data.item[lo:hi]]
        losses.append((1 / (1 + np.exp(-z)) - y[lo:hi]) ** 2)
        size = microbatch or hi - lo
        for _ in range(passes):
            for start in range(lo, hi, size):
                stop = min(start + size, hi)
                users, items = data.user[start:stop], data.item[start:stop]
                p = 1 / (1 + np.exp(-(mu + b["user"][users] + b["item"][items])))
                dz = 2 * (p - y[start:stop]) * p * (1 - p)  # d(p - y)^2 / dz
                scale = 1.0 if row_gradient == "sum" else 1.0 / (stop - start)
                np.add.at(b["user"], users, -table_lr * scale * dz)
                np.add.at(b["item"], items, -table_lr * scale * dz)
                mu -= lr * dz.mean()
    return np.concatenate(losses), b


@pytest.mark.parametrize("passes, microbatch, row_gradient",
                         [(1, 1, "sum"), (1, 1, "mean"), (2, 6, "sum"), (3, 6, "mean"), (2, None, "sum"),
                          (1, None, "mean")])
def test_biases_learn_as_the_naive_per_sample_loop(tiny, passes, microbatch, row_gradient):
    """At m = 1 with sgd tables ``biases`` is the online per-sample SGD learner; other m, k and row gradients are
    the same loop in chunks. Every prediction and every final bias agrees with the hand-written loop."""
    data = tiny.head(600)
    cfg = Config(method="biases", batch_size=20, offline_fraction=0.5, table_optimizer="sgd", optimizer="sgd",
                 table_lr=0.3, lr=0.05, train_passes=passes, train_microbatch=microbatch, row_gradient=row_gradient,
                 progress=False)
    trainer = StreamingTrainer(data, cfg, dtype=torch.float64)
    losses = np.concatenate([trainer.step(i).loss.numpy() for i in range(len(trainer.batches))])
    expected, b = naive_biases(data, 20, passes, microbatch, row_gradient, 0.3, 0.05)
    np.testing.assert_allclose(losses, expected, rtol=1e-10, atol=1e-12)
    for side in ("user", "item"):
        np.testing.assert_allclose(trainer.learner.tables[side].weight[:, 0].numpy(), b[side], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["fse", "mf", "sam", "uniform", "popularity-rule"])
def test_microbatches_are_single_sample_steps_in_stream_order(tiny, method):
    """m = 1, k = 2: after predicting a batch, the learner takes one step on each of its samples in stream order,
    twice, as a loop calling the one-step ``fit`` on each single-sample view of the stream does."""
    cfg = Config(method=method, train_microbatch=1, train_passes=2, **SMALL)
    data = tiny.head(200)
    trainer, naive = (StreamingTrainer(data, cfg, dtype=torch.float64) for _ in range(2))
    for index in range(5):
        trainer.step(index)
        start, stop = int(naive.batches.start[index]), int(naive.batches.stop[index])
        view = naive.stream.view(slice(start, stop))
        logits, weights = naive.learner.predict(view)
        naive.learner.predicted = None
        for _ in range(2):
            for i in range(start, stop):
                naive.learner.fit(naive.stream.view(slice(i, i + 1)), None)
        naive.learner.context.update(view, loss_and_correct(logits, view.target, cfg.task)[0], weights)
    a, b = list(tensors_in(trainer.learner.state())), list(tensors_in(naive.learner.state()))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["fse", "autoemb", "biases"])
def test_a_microbatch_of_the_batch_size_is_the_default(tiny, method):
    """m >= the batch, k = 1: the default path, bit for bit (the prediction's training forward reused)."""
    runs = [run(Config(method=method, **SMALL, **kw), tiny.head(1000)) for kw in ({}, {"train_microbatch": 20})]
    assert runs[0].summary["online_loss"] == runs[1].summary["online_loss"]
    assert runs[0].batches.loss.equals(runs[1].batches.loss)


@pytest.mark.parametrize("method", METHODS)
def test_a_batch_is_predicted_before_any_of_its_microbatches_is_learned(tiny, method, trainers_before_batch):
    """Flip the labels from the middle of batch 3 on: with k passes of micro-batches, the prediction of batch 3
    (and everything before it) is still identical; its labels matter once it is learned."""
    cfg = Config(method=method, **SMALL, **LEARNING)
    a, b = trainers_before_batch(tiny.head(400), cfg, flip_from=70)
    view_a, view_b = a.stream.view(slice(60, 80)), b.stream.view(slice(60, 80))
    torch.testing.assert_close(a.learner.predict(view_a)[0], b.learner.predict(view_b)[0], rtol=0, atol=0)
    a.learner.learn(view_a)
    b.learner.learn(view_b)
    moved = [not torch.equal(x, y) for x, y in zip(tensors_in(a.learner.state()), tensors_in(b.learner.state()))]
    assert any(moved)


def test_theta_unrolls_the_last_microbatch_once_per_batch(tiny):
    """Theta steps once per batch whatever k and m are; its unrolled L_train is W's last step's samples: the
    previous batch's last micro-batch (20 = 7 + 7 + 6: its last 6)."""
    trainer = StreamingTrainer(tiny.head(400), Config(method="autoemb", **SMALL, **LEARNING))
    calls = []
    original = trainer.learner.theta_step
    trainer.learner.theta_step = lambda train, validation: calls.append(train) or original(train, validation)
    seen = []
    view = trainer.stream.view
    trainer.stream.view = lambda positions: (torch.is_tensor(positions) and seen.append(positions.clone())) \
        or view(positions)
    for index in range(6):
        trainer.step(index)
    assert len(calls) == 5  # none before the first batch, then one per batch
    unrolled = seen[::2]
    for index, positions in enumerate(unrolled, start=1):
        assert torch.equal(positions, torch.arange(int(trainer.batches.start[index]) - 6, trainer.batches.start[index]))


@pytest.mark.parametrize("method", ["autoemb", "mf", "darts"])
def test_the_same_seed_gives_the_same_run_with_passes_and_microbatches(tiny, method):
    cfg = Config(method=method, **SMALL, **LEARNING)
    a, b = run(cfg, tiny.head(1500)), run(cfg, tiny.head(1500))
    assert a.batches.loss.equals(b.batches.loss)
    assert a.summary["online_loss"] == b.summary["online_loss"]
    assert a.summary["online_loss"] != run(Config(method=method, **SMALL), tiny.head(1500)).summary["online_loss"]


def test_the_settings_are_checked():
    for bad in ({"train_passes": 0}, {"train_passes": 1.5}, {"train_microbatch": 0}, {"row_gradient": "median"}):
        with pytest.raises(ae.DataError, match=next(iter(bad))):
            Config(**bad)


def test_in_batch_counts_count_each_id_within_its_own_batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, 103)
    batches = make_batches(len(ids), 10, 0.45)
    naive = [sum(ids[j] == ids[i] for j in range(start, stop))
             for start, stop, _ in batches for i in range(start, stop)]
    assert in_batch_counts(ids, batches).tolist() == naive


def test_a_run_saved_before_row_gradient_existed_is_not_reused_as_a_sum_run():
    """Runs saved before the setting computed with the mean: a results folder or checkpoint of theirs is not
    taken for today's default, and is for ``row_gradient: mean``."""
    old = Config().to_dict()
    del old["row_gradient"], old["train_passes"], old["train_microbatch"]
    assert Config().differences(old) == {"row_gradient": ("mean", "sum")}
    assert Config(row_gradient="mean").differences(old) == {}
