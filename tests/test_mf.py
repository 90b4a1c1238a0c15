"""mf, online matrix factorisation with biases: its predictions against a naive per-sample loop, its step against
numerical derivatives of the loss, its width and memory, and its place in the method table."""
import numpy as np
import pytest
import torch

import autoemb_core as ae
from autoemb_core.config import Config
from autoemb_core.methods import RIVALS, TABLE, TABLE2
from autoemb_core.model import loss_and_correct
from autoemb_core.train import StreamingTrainer, make_learner, run

SMALL = dict(batch_size=20, progress=False, mf_width=6)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny").head(400)


def naive_logits(learner, users, items) -> torch.Tensor:
    """mu + b_u + b_i + p_u . q_i, sample by sample (through the per-class head for classification)."""
    rows = []
    for u, i in zip(users.tolist(), items.tolist()):
        product = learner.factors["user"].weight[u] * learner.factors["item"].weight[i]
        factor = product.sum().reshape(1) if learner.head is None else product @ learner.head
        rows.append(learner.mu + learner.biases["user"].weight[u] + learner.biases["item"].weight[i] + factor)
    return torch.stack(rows).detach()


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_mf_predicts_as_a_naive_loop_and_learns_only_after(tiny, task):
    trainer = StreamingTrainer(tiny, Config(method="mf", task=task, **SMALL), dtype=torch.float64)
    learner = trainer.learner
    for index in range(6):
        start, stop = int(trainer.batches.start[index]), int(trainer.batches.stop[index])
        expected = naive_logits(learner, trainer.stream.user[start:stop], trainer.stream.item[start:stop])
        out = trainer.step(index)
        torch.testing.assert_close(out.loss, loss_and_correct(expected, out.view.target, task)[0])
    assert learner.factors["user"].weight.abs().sum() > 0  # the factors are drawn, not zero
    assert (learner.head is None) == (task == "regression")


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_mf_step_follows_numerical_derivatives_of_its_loss(tiny, task):
    """With SGD tables and SGD dense parameters one fit moves every parameter by minus its rate (``table_lr`` for
    the biases, ``factor_lr`` for the factors, ``lr`` for mu and the head) times the derivative of the batch's mean
    loss plus the L2 term on the factors (checked against central differences), times the batch's size for the
    table rows (``row_gradient: sum``)."""
    l2, lr, table_lr, factor_lr = 0.3, 0.05, 0.7, 0.2
    cfg = Config(method="mf", task=task, table_optimizer="sgd", optimizer="sgd", table_lr=table_lr, lr=lr,
                 factor_lr=factor_lr, embedding_l2=l2, embedding_init_std=0.5, **SMALL)
    trainer = StreamingTrainer(tiny, cfg, dtype=torch.float64)
    learner = trainer.learner
    view = trainer.stream.view(slice(40, 60))
    users, items, target = view.column("user"), view.column("item"), view.target

    def loss_of(b_user, b_item, p_user, q_item, mu, head):
        out, penalty = [], 0.0
        for u, i in zip(users.tolist(), items.tolist()):
            product = p_user[u] * q_item[i]
            factor = product.sum().reshape(1) if head is None else product @ head
            out.append(mu + b_user[u] + b_item[i] + factor)
            penalty = penalty + p_user[u].square().sum() + q_item[i].square().sum()
        loss = loss_and_correct(torch.stack(out), target, task)[0].mean()
        return float(loss + l2 * penalty / len(target))

    def parameters():
        return {"b_user": learner.biases["user"].weight.clone(), "b_item": learner.biases["item"].weight.clone(),
                "p_user": learner.factors["user"].weight.clone(), "q_item": learner.factors["item"].weight.clone(),
                "mu": learner.mu.detach().clone(), "head": None if learner.head is None else learner.head.detach().clone()}

    before = parameters()
    learner.learn(view)
    after = parameters()
    n = len(target)  # row_gradient sum: a row's gradient is its samples' summed, n times the mean loss's
    rates = {"b_user": table_lr * n, "b_item": table_lr * n, "p_user": factor_lr * n, "q_item": factor_lr * n, "mu": lr,
             "head": lr}
    h = 1e-6
    probes = [("b_user", int(users[0]), 0), ("p_user", int(users[3]), 2), ("b_item", int(items[1]), 0),
              ("q_item", int(items[5]), 5), ("mu", None, 0)] + ([("head", 3, 1)] if learner.head is not None else [])
    for name, row, col in probes:
        values = dict(before)

        def shifted(delta):
            moved = {key: (None if v is None else v.clone()) for key, v in values.items()}
            if row is None:
                moved[name][col] += delta
            else:
                moved[name][row, col] += delta
            return loss_of(**moved)

        derivative = (shifted(h) - shifted(-h)) / (2 * h)
        old = before[name][col] if row is None else before[name][row, col]
        new = after[name][col] if row is None else after[name][row, col]
        rate = rates[name]
        assert float(old - new) == pytest.approx(rate * derivative, rel=1e-5, abs=1e-10), (name, row, col)
    untouched = sorted(set(range(tiny.n_users)) - set(users.tolist()))[:5]
    for name in ("b_user", "p_user"):  # row-sparse: other rows never move
        assert torch.equal(after[name][untouched], before[name][untouched])


def test_mf_width_memory_and_parameters(tiny):
    for task, outputs in (("regression", 1), ("classification", 5)):
        cfg = Config(method="mf", task=task, **SMALL)
        assert cfg.width == 6 and Config(method="mf").width == 146  # None: sum(dims), FSE's memory
        learner = make_learner(cfg, tiny, torch.device("cpu"))
        memory = learner.memory()
        head = 0 if task == "regression" else 6 * 5
        assert memory["embedding_parameters"] == (tiny.n_users + tiny.n_items) * (outputs + 6) + outputs + head
        adagrad = 2  # the weight and its sum of squares
        assert memory["embedding_bytes"] >= adagrad * 4 * (tiny.n_users + tiny.n_items) * (outputs + 6)


def test_mf_is_one_row_of_the_method_table():
    row = TABLE["mf"]
    assert row.learner == "mf" and row.family == "fixed" and row.theta == "none" and row.width_setting == "mf_width"
    assert "mf" in TABLE2 and TABLE2.index("mf") == TABLE2.index("biases") + 1 and "mf" in RIVALS
    assert set(row.space) <= set(ae.config.TUNABLE)


def test_mf_runs_and_resumes_bit_for_bit(tiny, tmp_path):
    cfg = Config(method="mf", task="classification", **SMALL)
    whole = run(cfg, tiny)
    assert np.isfinite(whole.summary["online_loss"]) and whole.summary["hypergradient_second_order_ratio"] is None
    folder = tmp_path / "ckpt"
    first = StreamingTrainer(tiny, Config(**{**cfg.to_dict(), "checkpoint_dir": str(folder), "checkpoint_every": 4}))
    original = first.step

    def step(index):
        if index == 9:
            raise KeyboardInterrupt
        return original(index)
    first.step = step
    with pytest.raises(KeyboardInterrupt):
        first.run()
    resumed = StreamingTrainer(tiny, Config(**{**cfg.to_dict(), "checkpoint_dir": str(folder), "resume": True}))
    again = resumed.run()
    assert resumed.resumed_from == 8  # the checkpoint after batch 7 (every 4: 3, 7)
    assert again.summary["online_loss"] == whole.summary["online_loss"]
    assert again.samples["loss"].equals(whole.samples["loss"])
