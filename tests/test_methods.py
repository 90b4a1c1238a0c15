"""The reference predictors against naive loops, the allocation controls, the held-out share, the optimizer
step that the unrolled W' and the real update share, and tuned values from params files."""
import copy

import numpy as np
import pytest
import torch

import autoemb_core as ae
from autoemb_core.__main__ import main as cli
from autoemb_core.config import Config, resolve
from autoemb_core.interactions import DataError, binary_label, class_label
from autoemb_core.model import SIDES, SparseRows, optimizer_step
from autoemb_core.selection import popularity_rule
from autoemb_core.stream import holdout_mask, make_batches, sample_validation
from autoemb_core.train import StreamingTrainer, run

SMALL = dict(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=20, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny").head(600)


def stream_of(trainer):
    out = []
    for index in range(len(trainer.batches)):
        out.append(trainer.step(index))
    return out


# -- reference predictors against naive loops ----------------------------------------------------------
def naive_means(data, batch_size, per_item, prior, task):
    """Predict each batch from the labels of earlier batches only: global or shrunk per-item frequencies."""
    labels = binary_label(data.rating) if task == "regression" else class_label(data.rating)
    k = 1 if task == "regression" else 5
    predictions = []
    for start in range(0, len(data), batch_size):
        past = labels[:start]
        if task == "regression":
            overall = np.array([past.sum(), len(past)]) if len(past) else np.array([0.5, 1.0])
        else:
            overall = np.bincount(past, minlength=k).astype(float) if len(past) else np.ones(k)
        for j in range(start, min(start + batch_size, len(data))):
            counts = overall.astype(float)
            if per_item:
                mine = labels[:start][data.item[:start] == data.item[j]]
                share = overall / (overall[1] if task == "regression" else overall.sum())
                own = np.array([mine.sum(), len(mine)]) if task == "regression" else np.bincount(mine, minlength=k)
                counts = own + prior * share
            p = counts[0] / counts[1] if task == "regression" else counts / counts.sum()
            predictions.append(p)
    return np.array(predictions)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("method", ["global-mean", "item-mean"])
def test_mean_predictors_match_a_naive_loop(tiny, method, task):
    cfg = Config(method=method, task=task, item_prior=3.0, **SMALL)
    trainer = StreamingTrainer(tiny, cfg, dtype=torch.float64)
    predicted = []
    for index, (start, stop, _) in enumerate(trainer.batches):
        with torch.no_grad():
            logits = trainer.learner.predict(trainer.stream.view(slice(start, stop)))[0]
        predicted.append(torch.sigmoid(logits[:, 0]) if task == "regression" else torch.softmax(logits, 1))
        trainer.step(index)
    expected = naive_means(tiny, 20, method == "item-mean", 3.0, task)
    np.testing.assert_allclose(torch.cat(predicted).numpy(), expected, rtol=1e-6, atol=2e-6)  # frequencies floored at 1e-6


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_biases_take_exactly_one_step_over_each_batch(tiny, task):
    """biases: predict with mu + b_u + b_i, then one row-wise Adagrad step: each row's gradient its own samples'
    summed (row_gradient: sum), mu's the batch's mean loss's."""
    cfg = Config(method="biases", task=task, table_lr=0.3, lr=0.05, **SMALL)
    trainer = StreamingTrainer(tiny, cfg, dtype=torch.float64)
    bu, bi = torch.zeros(tiny.n_users, cfg.n_outputs, dtype=torch.float64), torch.zeros(tiny.n_items, cfg.n_outputs, dtype=torch.float64)
    su, si = torch.zeros_like(bu), torch.zeros_like(bi)
    mu = torch.zeros(cfg.n_outputs, dtype=torch.float64)
    adam = torch.optim.Adam([mu.requires_grad_()], lr=0.05)
    for index, (start, stop, _) in enumerate(list(trainer.batches)[:6]):
        user, item = torch.as_tensor(tiny.user[start:stop]), torch.as_tensor(tiny.item[start:stop])
        target = trainer.stream.target[start:stop]
        out = trainer.step(index)
        logits = mu + bu[user] + bi[item]
        expected = ae.model.loss_and_correct(logits, target, task)[0]
        torch.testing.assert_close(out.loss, expected.detach())
        ru, ri = bu[user].clone().requires_grad_(), bi[item].clone().requires_grad_()
        loss = ae.model.loss_and_correct(mu + ru + ri, target, task)[0].mean()
        gu, gi, gm = torch.autograd.grad(loss, [ru, ri, mu])
        for table, acc, ids, g in ((bu, su, user, gu), (bi, si, item, gi)):
            unique, inverse = torch.unique(ids, return_inverse=True)
            summed = torch.zeros(len(unique), cfg.n_outputs, dtype=torch.float64).index_add_(0, inverse, g) * len(ids)
            acc[unique] += summed ** 2
            table[unique] -= 0.3 * summed / (acc[unique].sqrt() + 1e-8)
        mu.grad = gm
        adam.step()
    torch.testing.assert_close(trainer.learner.tables["user"].weight, bu)
    torch.testing.assert_close(trainer.learner.mu.detach(), mu.detach())


# -- allocation controls -------------------------------------------------------------------------------
def test_popularity_rule_is_a_step_function_of_popularity():
    popularity = torch.tensor([0, 1, 7, 8, 9, 63, 64, 10**9])
    assert popularity_rule(popularity, (8, 64)).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert popularity_rule(popularity, (1,)).tolist() == [0, 1, 1, 1, 1, 1, 1, 1]


def test_the_controls_give_their_fixed_weights(tiny):
    for method in ("uniform", "random", "popularity-rule"):
        cfg = Config(method=method, popularity_thresholds=(3,), **SMALL)
        trainer = StreamingTrainer(tiny, cfg)
        first_seen = {}
        for out in stream_of(trainer):
            for s in SIDES:
                w, pop = out.weights[s], out.popularity[s]
                torch.testing.assert_close(w.sum(1), torch.ones(len(w)))
                if method == "uniform":
                    assert torch.all(w == 0.5)
                elif method == "popularity-rule":
                    assert torch.equal(w.argmax(1), (pop >= 3).long()) and torch.all(w.max(1).values == 1)
                else:  # a fixed vector per id, the same every time the id comes back
                    for i, row in zip(out.view.ids[s].tolist(), w):
                        assert torch.equal(first_seen.setdefault((s, i), row), row)
        if method == "random":
            assert len({tuple(v.tolist()) for v in first_seen.values()}) == len(first_seen)
        assert trainer.learner.selector.theta(out.view) == {}


def test_random_weights_depend_on_the_seed(tiny):
    a = StreamingTrainer(tiny, Config(method="random", seed=0, **SMALL)).learner.selector.table["user"]
    b = StreamingTrainer(tiny, Config(method="random", seed=1, **SMALL)).learner.selector.table["user"]
    assert not torch.equal(a, b)


# -- the held-out share --------------------------------------------------------------------------------
def test_holdout_mask_depends_on_the_seed_only():
    a, b = holdout_mask(10_000, 0.1, 3), holdout_mask(10_000, 0.1, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, holdout_mask(10_000, 0.1, 4))
    assert 0.08 < a.mean() < 0.12 and not holdout_mask(100, 0.0, 3).any()


def test_holdout_validation_draws_past_held_out_positions_only():
    batches = make_batches(1000, 100, 0.7)
    held = np.flatnonzero(holdout_mask(1000, 0.1, 0))
    rng = np.random.default_rng(0)
    assert len(sample_validation(rng, batches, 0, 50, "holdout", held)) == 0
    for index in range(1, len(batches)):
        val = sample_validation(rng, batches, index, 50, "holdout", held)
        assert len(val) == 50 and np.isin(val, held).all() and val.max() < batches.start[index]


@pytest.mark.parametrize("method", ["fse", "autoemb", "biases"])
def test_w_never_trains_on_held_out_samples(tiny, method):
    """Flip only the held-out labels: the predictions of every later batch stay the same for fse and
    biases (nothing learns from them), and W's rows stay the same for autoemb (only Theta reads them)."""
    cfg = Config(method=method, validation="holdout", holdout_fraction=0.3, **SMALL)
    trainer = StreamingTrainer(tiny, cfg)
    held = trainer.held
    flipped = copy.copy(tiny)
    flipped.rating = np.where(held, 6 - tiny.rating, tiny.rating)
    a, b = trainer, StreamingTrainer(flipped, cfg)
    out_a, out_b = stream_of(a), stream_of(b)
    if method == "autoemb":
        controllers = a.learner.selector.controllers, b.learner.selector.controllers
        assert not torch.equal(controllers[0]["user"].net[0].weight, controllers[1]["user"].net[0].weight)
    else:
        for x, y, (start, stop, _) in zip(out_a, out_b, a.batches):
            keep = torch.as_tensor(~held[start:stop])
            torch.testing.assert_close(x.loss[keep], y.loss[keep], rtol=0, atol=0)
        for s in SIDES:
            tables = a.learner.tables, b.learner.tables
            assert torch.equal(tables[0][s].weight, tables[1][s].weight)


def test_holdout_trains_every_method_on_the_same_samples(tiny):
    masks = {m: StreamingTrainer(tiny, Config(method=m, validation="holdout", **SMALL)).held for m in ("fse", "darts")}
    assert np.array_equal(masks["fse"], masks["darts"]) and masks["fse"].any()
    assert not StreamingTrainer(tiny, Config(method="fse", **SMALL)).held.any()


# -- the optimizer step shared by W' and the real update -------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "sgd"])
def test_virtual_step_is_the_step_the_real_update_takes(optimizer):
    gen = torch.Generator().manual_seed(0)
    table = SparseRows(10, 4, optimizer, 0.1, 0.1, gen, "cpu", torch.float64)
    rows = torch.tensor([1, 4, 7])
    for _ in range(3):  # some history, so the moments matter
        grad = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        before = table.weight.clone()
        step = table.virtual_step(rows, grad)
        table.update(rows, grad)
        torch.testing.assert_close(before[rows] - step, table.weight[rows])
        assert torch.equal(before[[0, 2, 3]], table.weight[[0, 2, 3]])


def test_optimizer_step_matches_torch_adam_on_dense_parameters():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.01)
    for _ in range(4):
        g = torch.randn(5, 3, generator=gen, dtype=torch.float64)
        state = opt.state.get(p)
        state = {"m": state["exp_avg"], "v": state["exp_avg_sq"], "steps": float(state["step"])} if state else \
            {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "steps": 0.0}
        expected = p.detach() - optimizer_step("adam", g, state, 0.01)
        p.grad = g
        opt.step()
        torch.testing.assert_close(p.detach(), expected)


def test_optimizer_step_has_a_finite_derivative_at_zero_moments():
    g = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for kind, state in (("adam", {"m": torch.zeros(3), "v": torch.zeros(3), "steps": 0.0}), ("adagrad", {"sum": torch.zeros(3)})):
        (d,) = torch.autograd.grad(optimizer_step(kind, g, state, 0.1).sum(), g)
        assert torch.isfinite(d).all()


# -- tuned values ----------------------------------------------------------------------------------------
def test_tuned_values_apply_to_their_method_unless_given_explicitly(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: synthetic-tiny\nlr: 0.002\ntuned:\n  regression:\n"
                      "    fse: {table_lr: 0.07, lr: 0.009}\n    darts: {logit_lr: 0.3}\n")
    cfg = resolve({"method": "fse"}, params)
    assert cfg.resolved().table_lr == 0.07 and cfg.resolved().lr == 0.002  # lr is explicit in the file
    assert resolve({"method": "fse", "table_lr": 0.5}, params).resolved().table_lr == 0.5
    import dataclasses
    darts = dataclasses.replace(cfg, method="darts").resolved()
    assert darts.logit_lr == 0.3 and darts.table_lr == Config().table_lr
    assert dataclasses.replace(cfg, task="classification").resolved().table_lr == Config().table_lr
    assert resolve({"method": "fse", "table_lr": 0.2}, params).resolved().table_lr == 0.2  # given at the default


def test_a_run_records_the_tuned_values_it_used(tmp_path, tiny):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: synthetic-tiny\ntuned:\n  regression:\n    fse: {table_lr: 0.07}\n")
    result = run(resolve({"method": "fse", "max_interactions": 600, **SMALL}, params), tiny)
    assert result.summary["tuned"] == {"table_lr": 0.07} and result.summary["config"]["table_lr"] == 0.07


@pytest.mark.parametrize("block, message", [
    ("tuned:\n  regresion:\n    fse: {lr: 0.1}\n", "not a task"),
    ("tuned:\n  regression:\n    fsee: {lr: 0.1}\n", "not a method"),
    ("tuned:\n  regression:\n    fse: {batch_size: 10}\n", "cannot be tuned"),
])
def test_a_bad_tuned_block_gets_a_clear_message(tmp_path, block, message):
    params = tmp_path / "p.yaml"
    params.write_text("dataset: synthetic-tiny\n" + block)
    with pytest.raises(DataError, match=message) as info:
        resolve(params=params)
    assert "p.yaml" in str(info.value)


def test_bad_new_settings_get_a_clear_message():
    with pytest.raises(DataError, match="popularity_thresholds"):
        Config(popularity_thresholds=(64, 8))
    with pytest.raises(DataError, match="holdout_fraction"):
        Config(validation="holdout", holdout_fraction=1.5)
    with pytest.raises(DataError, match="table_optimizer"):
        Config(table_optimizer="adadelta")


@pytest.mark.parametrize("method", ["global-mean", "item-mean", "biases", "uniform", "random", "popularity-rule"])
def test_cli_runs_the_new_methods(tmp_path, capsys, method):
    assert cli(["run", "--dataset", "synthetic-tiny", "--method", method, "--max-interactions", "2000",
                "--results-dir", str(tmp_path), "--no-progress"]) == 0
    assert "online: loss" in capsys.readouterr().out
