"""The engine: hypergradients against numerical derivatives, what trains on what, causality, sparsity,
the popularity and context tables, and every method end to end."""
import argparse
import copy
import json

import numpy as np
import pytest
import torch

import autoemb_core as ae
from autoemb_core.__main__ import in_flags, main as cli
from autoemb_core.config import TRANSFORMS, Config
from autoemb_core.learner import tensors_in
from autoemb_core.methods import BILEVEL, METHODS, SELECTING
from autoemb_core.model import DLRS, SIDES, controller_features, loss_and_correct
from autoemb_core.reference import Reference
from autoemb_core.train import StreamingTrainer, run

SMALL = dict(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=20, progress=False)


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny")


def small_trainer(data, method="autoemb", steps=3, dtype=torch.float64, **kw):
    cfg = Config(method=method, **{**SMALL, **kw})
    trainer = StreamingTrainer(data.head(400), cfg, dtype=dtype)
    for index in range(min(steps, len(trainer.batches))):
        trainer.step(index)
    return trainer


def bilevel_view(trainer, index=3):
    val = ae.sample_validation(np.random.default_rng(5), trainer.batches, index, 20)
    view = trainer.stream.view(torch.cat([trainer.previous, torch.as_tensor(val)]))
    return view, len(trainer.previous)


def objective(learner, view, n_train, xi):
    """L_val(W', Theta) by forward passes and first-order gradients only. W' is what W's real update on the
    training part gives: with ``unroll: optimizer`` a copy of the learner takes the very steps train_w takes
    (row-wise on the training ids' rows, then the dense optimizer's step); with ``sgd``, W - xi grad."""
    learner = copy.deepcopy(learner)
    train, val = view.part(0, n_train), view.part(n_train, len(view.target))
    w = learner.w_leaves(view)
    l_train = learner.loss(w, learner.selection(view, learner.theta(view)), train, "batch") + learner.penalty(w, train)
    grads = torch.autograd.grad(l_train, list(w.values()), allow_unused=True)
    if learner.cfg.unroll == "sgd" or xi == 0:
        unrolled = {k: p - xi * (0 if g is None else g) for (k, p), g in zip(w.items(), grads)}
    else:
        with torch.no_grad():
            for s, g in zip(SIDES, grads[:2]):
                rows = train.local[s]
                learner.tables[s].update(view.ids[s].index_select(0, rows),
                                         learner.row_gradient(train, g.index_select(0, rows)))
            for p, g in zip(learner.dense.values(), grads[2:]):
                p.grad = g
            learner.dlrs_opt.step()
        unrolled = learner.w_leaves(view)
    return learner.loss(unrolled, learner.selection(view, learner.theta(view)), val, "batch").item()


def shift_theta(learner, view, direction, h):
    """Move Theta by h * direction in place (controller parameters, or the viewed logit rows)."""
    with torch.no_grad():
        if hasattr(learner.selector, "controllers"):
            for name, p in learner.selector.controllers.named_parameters():
                p.add_(h * direction[name])
        else:
            for s in SIDES:
                learner.selector.logits[s].weight[view.ids[s]] += h * direction[s]


def numerical_directional(learner, view, n_train, xi, direction, h=1e-5):
    shift_theta(learner, view, direction, h)
    up = objective(learner, view, n_train, xi)
    shift_theta(learner, view, direction, -2 * h)
    down = objective(learner, view, n_train, xi)
    shift_theta(learner, view, direction, h)
    return (up - down) / (2 * h)


def directional(grads, direction):
    return sum(float((grads[k] * direction[k]).sum()) for k in direction if grads[k] is not None)


UNROLLS = [dict(unroll="optimizer", table_optimizer="adagrad", table_lr=0.5, lr=0.05),
           dict(unroll="optimizer", table_optimizer="adam", table_lr=0.05, lr=0.05),
           dict(unroll="sgd", xi=0.5),
           dict(unroll="optimizer", table_optimizer="adagrad", table_lr=0.5, lr=0.05, embedding_l2=0.3)]
UNROLL_IDS = ["adagrad", "adam", "sgd", "adagrad-l2"]


def test_embedding_l2_is_the_per_sample_penalty_and_enters_the_real_step(tiny):
    cfg = dict(**{**SMALL, "table_optimizer": "sgd", "table_lr": 0.1})
    with_l2 = StreamingTrainer(tiny.head(400), Config(method="fixed-16", embedding_l2=0.5, **cfg), dtype=torch.float64)
    without = StreamingTrainer(tiny.head(400), Config(method="fixed-16", **cfg), dtype=torch.float64)
    view = with_l2.stream.view(slice(0, 60))
    with_l2, without = with_l2.learner, without.learner
    rows = {s: with_l2.tables[s].weight.clone() for s in SIDES}
    naive = sum(float(rows["user"][u] @ rows["user"][u] + rows["item"][i] @ rows["item"][i])
                for u, i in zip(tiny.user[:60], tiny.item[:60])) / 60
    assert with_l2.penalty(with_l2.w_leaves(view), view).item() == pytest.approx(0.5 * naive, rel=1e-12)
    assert without.penalty(without.w_leaves(view), view) == 0.0
    for learner in (with_l2, without):
        learner.train_w(view, *learner.training_outputs(view, learner.selection(view, learner.theta(view))))
    for s in SIDES:  # SGD: the penalty's gradient, 2 l2 count e summed over the row's samples (row_gradient: sum),
        # is the only difference between the two steps
        counts = torch.zeros(len(rows[s]), dtype=torch.float64).index_add_(0, view.ids[s], view.counts[s].double())
        expected = -0.1 * 2 * 0.5 * counts.unsqueeze(1) * rows[s]
        torch.testing.assert_close(with_l2.tables[s].weight - without.tables[s].weight, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unroll", UNROLLS, ids=UNROLL_IDS)
@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("method, architecture", [("autoemb", {}), ("darts", {}), ("autoemb", {"transform": "tanh"}),
                                                  ("autoemb", {"transform": "linear"}), ("autoemb", {"head_batchnorm": True})],
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_second_order_hypergradient_matches_numerical_derivative(tiny, method, architecture, fast_path, unroll):
    """The hypergradient through W' = W - step, where step is the update W's optimizers really take."""
    xi = unroll.get("xi")
    trainer = small_trainer(tiny, method, fast_path=fast_path, **architecture, **unroll)
    view, n_train = bilevel_view(trainer)
    learner = trainer.learner
    exact, ratio = learner.hypergradient(view, n_train)
    assert ratio > 1e-3
    first_order, ratio = small_trainer(tiny, method, fast_path=fast_path, **architecture,
                                       **{**unroll, "xi": 0.0}).learner.hypergradient(view, n_train)
    assert ratio == 0.0
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        direction = {k: torch.randn(v.shape, generator=gen, dtype=torch.float64) for k, v in learner.theta(view).items()}
        numeric = numerical_directional(learner, view, n_train, xi, direction)
        assert directional(exact, direction) == pytest.approx(numeric, rel=1e-4, abs=1e-10)
        # the second-order term matters here, so dropping it would fail the line above
        assert abs(directional(first_order, direction) - numeric) > 1e-3 * abs(numeric)


@pytest.mark.parametrize("unroll", UNROLLS, ids=UNROLL_IDS)
@pytest.mark.parametrize("method", ["autoemb", "darts"])
def test_finite_difference_hypergradient_agrees_with_the_exact_one(tiny, method, unroll):
    trainer = small_trainer(tiny, method, **unroll)
    view, n_train = bilevel_view(trainer)
    learner = trainer.learner
    exact, _ = learner.hypergradient(view, n_train)
    learner.cfg.hypergradient = "finite-difference"
    approx, _ = learner.hypergradient(view, n_train)
    for k in exact:
        torch.testing.assert_close(approx[k], exact[k], rtol=1e-4, atol=1e-7)


def test_first_order_is_the_xi_zero_case(tiny):
    trainer = small_trainer(tiny, "autoemb", xi=0.0)
    view, n_train = bilevel_view(trainer)
    learner = trainer.learner
    hyper, ratio = learner.hypergradient(view, n_train)
    assert ratio == 0.0
    direction = {k: torch.ones_like(v) for k, v in learner.theta(view).items()}
    numeric = numerical_directional(learner, view, n_train, 0.0, direction)
    assert directional(hyper, direction) == pytest.approx(numeric, rel=1e-4)


def flatten(prefix, obj):
    """Every tensor in a nest of dicts and lists, keyed by its path."""
    if torch.is_tensor(obj):
        return {prefix: obj.detach().clone()}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    return {k: v for key, value in items for k, v in flatten(f"{prefix}.{key}", value).items()}


def snapshot(trainer):
    learner = trainer.learner
    if isinstance(learner, Reference):  # every tensor it holds, its optimizer state included
        return {f"ref.{n}": t.detach().clone() for n, t in enumerate(tensors_in(learner.tensors()))}
    state = {k: v for s in SIDES for k, v in flatten(f"table.{s}", learner.tables[s].state()).items()}
    state.update({f"dlrs.{k}": v.clone() for k, v in learner.dlrs.state_dict().items()})
    if hasattr(learner.selector, "controllers"):
        state.update({f"theta.{k}": v.clone() for k, v in learner.selector.controllers.state_dict().items()})
    if hasattr(learner.selector, "logits"):
        state.update({f"theta.{s}": learner.selector.logits[s].weight.clone() for s in SIDES})
    return state


def changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("method", ["autoemb", "darts"])
def test_bilevel_step_moves_theta_only(tiny, method, theta_step):
    trainer = small_trainer(tiny, method, dtype=torch.float32)
    before = snapshot(trainer)
    assert np.isfinite(theta_step(trainer, 3))
    moved = changed(before, snapshot(trainer))
    assert moved and all(k.startswith("theta.") for k in moved), moved  # W never trains on validation data


@pytest.mark.parametrize("method, theta_moves", [("autoemb", False), ("darts", False), ("sam", True)])
def test_training_step_gives_theta_gradients_only_for_sam(tiny, method, theta_moves):
    trainer = small_trainer(tiny, method, dtype=torch.float32)
    learner = trainer.learner
    view = trainer.stream.view(torch.arange(60, 80))
    _, weights = learner.scores(view)
    before = snapshot(trainer)
    learner.train_w(view, *learner.training_outputs(view, weights))
    moved = changed(before, snapshot(trainer))
    assert any(k.startswith("dlrs.") for k in moved)
    assert any(k.startswith("theta.") for k in moved) == theta_moves


@pytest.mark.parametrize("method", METHODS)
def test_batch_is_predicted_before_any_parameter_sees_it(tiny, method, trainers_before_batch):
    """Change the labels of batch 3 onwards: everything up to and including its prediction is identical."""
    a, b = trainers_before_batch(tiny.head(400), Config(method=method, **SMALL))
    assert not changed(snapshot(a), snapshot(b))
    view_a, view_b = a.stream.view(torch.arange(60, 80)), b.stream.view(torch.arange(60, 80))
    assert not torch.equal(view_a.target, view_b.target)
    # the prediction as the stream makes it (grad enabled: the fast path's training forward where it is reused)
    torch.testing.assert_close(a.learner.predict(view_a)[0], b.learner.predict(view_b)[0], rtol=0, atol=0)
    a.learner.learn(view_a)
    b.learner.learn(view_b)
    assert changed(snapshot(a), snapshot(b))  # and the labels do matter once it learns


@pytest.mark.parametrize("regime", ["paper", "esapn"])
@pytest.mark.parametrize("method", ["fse", "sam", "darts", "autoemb", "uniform"])
def test_batch_is_predicted_before_any_parameter_sees_it_in_each_regime(tiny, method, regime, trainers_before_batch):
    """The same under the fixed regimes: ESAPN's predictions on batch statistics use the batch's ids, never its
    labels, and its controllers learn from the previous batch."""
    a, b = trainers_before_batch(tiny.head(400), Config(method=method, regime=regime, **SMALL))
    assert a.cfg.head_batchnorm == (regime == "esapn")
    assert not changed(snapshot(a), snapshot(b))
    view_a, view_b = a.stream.view(torch.arange(60, 80)), b.stream.view(torch.arange(60, 80))
    torch.testing.assert_close(a.learner.predict(view_a)[0], b.learner.predict(view_b)[0], rtol=0, atol=0)
    a.learner.learn(view_a)
    b.learner.learn(view_b)
    assert changed(snapshot(a), snapshot(b))


def test_validation_and_unrolled_batches_come_from_the_past(tiny):
    trainer = small_trainer(tiny, "autoemb", steps=0, dtype=torch.float32)
    seen = []
    original = trainer.stream.view
    trainer.stream.view = lambda positions: (torch.is_tensor(positions) and seen[-1].append(positions.clone())) \
        or original(positions)  # the incoming batch is viewed as a slice
    for index in range(9):
        seen.append([])
        trainer.step(index)
    starts = trainer.batches.start
    assert seen[0] == []  # nothing before the first batch: no bilevel step
    for index, (unrolled, validation) in enumerate(seen[1:], start=1):  # one of each per batch after the first
        assert torch.equal(unrolled, torch.arange(starts[index - 1], starts[index]))  # the batch W last trained on
        assert not torch.equal(validation, torch.arange(int(validation.min()), int(validation.max()) + 1))
        assert int(validation.max()) < starts[index]


@pytest.mark.parametrize("method", ["fse", "autoemb", "darts"])
def test_a_step_touches_only_the_rows_its_batches_use(tiny, method):
    trainer = small_trainer(tiny, method, dtype=torch.float32)
    before = snapshot(trainer)
    assert (trainer.batches.start[3], trainer.batches.stop[3]) == (60, 80)
    trainer.step(3)
    used = {s: set(getattr(trainer.stream, s)[:80].tolist()) for s in SIDES}  # this batch, the previous one, validation
    current = {s: set(getattr(trainer.stream, s)[60:80].tolist()) for s in SIDES}
    after = snapshot(trainer)
    for s in SIDES:
        for key in trainer.learner.tables[s].state():
            rows = torch.nonzero((before[f"table.{s}.{key}"] != after[f"table.{s}.{key}"]).reshape(len(before[f"table.{s}.{key}"]), -1).any(1)).flatten()
            assert set(rows.tolist()) == current[s], (s, key)  # W trains on the new batch only
        if method == "darts":
            rows = torch.nonzero((before[f"theta.{s}"] != after[f"theta.{s}"]).any(1)).flatten()
            assert rows.numel() and set(rows.tolist()) <= used[s]


@pytest.mark.parametrize("method", ["sam", "darts", "autoemb"])
def test_selection_weights_are_a_distribution(tiny, method):
    trainer = small_trainer(tiny, method, dtype=torch.float32)
    _, weights = trainer.learner.scores(trainer.stream.view(torch.arange(60, 80)))
    for s in SIDES:
        assert torch.all(weights[s] >= 0)
        torch.testing.assert_close(weights[s].sum(1), torch.ones(len(weights[s])))


def test_popularity_and_context_tables(tiny):
    data = tiny.head(400)
    trainer = StreamingTrainer(data, Config(method="autoemb", **SMALL))
    expected = {s: ae.popularity_before_batch(getattr(data, s), trainer.batches) for s in SIDES}
    losses = []
    for index, (start, stop, _) in enumerate(trainer.batches):
        out = trainer.step(index)
        losses.append(out.loss)
        for s in SIDES:
            assert out.popularity[s][out.view.inverse[s]].tolist() == expected[s][start:stop].tolist()
            ids = out.view.ids[s]
            mean_loss = [float(out.loss[out.view.inverse[s] == k].mean()) for k in range(len(ids))]
            context = trainer.learner.context
            assert context.last_loss[s][ids].tolist() == pytest.approx(mean_loss, rel=1e-6)
            assert torch.equal(context.last_weights[s][ids], out.weights[s])
            assert torch.equal(context.popularity[s], torch.bincount(getattr(trainer.stream, s)[:stop],
                                                                     minlength=len(context.popularity[s])))
    never = torch.nonzero(context.popularity["user"] == 0).flatten()
    assert torch.all(context.last_weights["user"][never] == 0.5)
    # a new id's context claims no perfect loss: it reads the running mean loss of every sample so far
    running = float(context.running_loss())
    assert running == pytest.approx(float(torch.cat(losses).double().mean()), rel=1e-6)
    features = context.features("user", never, trainer.cfg.popularity_buckets)
    assert features[:, -1].tolist() == pytest.approx([running] * len(never))
    old = torch.nonzero(context.popularity["user"] > 0).flatten()[:3]
    assert context.features("user", old, 34)[:, -1].tolist() == pytest.approx(context.last_loss["user"][old].tolist())


def test_controller_features_layout():
    f = controller_features(torch.tensor([0, 1, 3, 10**12]), torch.full((4, 3), 1 / 3), torch.tensor([0.5, 0, 0, 1.0]), 34)
    assert f.shape == (4, 38)
    assert f[:, :34].argmax(1).tolist() == [0, 1, 2, 33] and f[:, :34].sum(1).tolist() == [1, 1, 1, 1]
    assert f[0, 34:37].tolist() == pytest.approx([1 / 3] * 3) and f[:, 37].tolist() == [0.5, 0, 0, 1.0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_every_method_runs_end_to_end(tiny, method, task):
    result = run(Config(method=method, task=task, progress=False, max_interactions=4000), tiny)
    s = result.summary
    assert np.isfinite([s["online_loss"], s["offline_loss"], s["online_accuracy"], s["offline_accuracy"]]).all()
    assert result.batches["size"].sum() == 4000 and len(result.samples) == 1200
    assert 0 <= s["online_accuracy"] <= 1 and result.samples["loss"].notna().all()
    assert (len(result.alphas) > 0) == (method in SELECTING)
    assert (s["hypergradient_second_order_ratio"] is not None) == (method in BILEVEL)


def test_same_seed_same_result_on_cpu(tiny):
    cfg = Config(method="autoemb", progress=False, max_interactions=3000, seed=3)
    a, b = run(cfg, tiny), run(cfg, tiny)
    pd_equal = a.batches.drop(columns="seconds").equals(b.batches.drop(columns="seconds"))
    assert pd_equal and a.samples.equals(b.samples) and a.alphas.equals(b.alphas)
    c = run(Config(method="autoemb", progress=False, max_interactions=3000, seed=4), tiny)
    assert not a.samples["loss"].equals(c.samples["loss"])


def test_cli_run_writes_results(tmp_path, capsys):
    assert cli(["run", "--dataset", "synthetic-tiny", "--method", "darts", "--max-interactions", "3000",
                "--results-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "online: loss" in out
    (folder,) = tmp_path.iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    for key in ("online_loss", "online_accuracy", "offline_loss", "offline_accuracy", "n_interactions",
                "samples_per_second", "method", "task", "dataset", "seed", "config", "versions"):
        assert key in summary
    assert summary["n_interactions"] == 3000 and summary["config"]["method"] == "darts"
    assert (folder / "batches.csv").read_text().startswith("batch,stage,seen,size,loss,accuracy,seconds")


def test_cli_bad_arguments_get_a_clear_message(tmp_path, capsys):
    assert cli(["run", "--dataset", "nope", "--method", "fse"]) == 2
    assert "--dataset 'nope' is not valid" in (err := capsys.readouterr().err) and "choose one of" in err
    assert cli(["run", "--method", "autoemd"]) == 2  # one message, from Config, naming the flag
    assert "error: --method 'autoemd' is not valid (did you mean 'autoemb'?)" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: -1\n")
    assert cli(["run", "--params", str(bad), "--dataset", "synthetic-tiny"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err
    bad.write_text("learning_rate: 0.1\n")
    assert cli(["run", "--params", str(bad)]) == 2
    assert "unknown setting" in capsys.readouterr().err


def test_cli_hints_name_the_flags_not_the_keywords(tmp_path, capsys):
    assert cli(["summary", "--dataset", "ml-100k", "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "pass --data-dir <folder holding u.data>" in err and "data_dir=" not in err
    assert "for dataset 'ml-100k'" in err  # an English word that is also a flag stays a word
    parser = argparse.ArgumentParser()
    parser.add_argument("--results-dir")
    parser.add_argument("--data-dir")
    assert in_flags("give results_dir, or set data_dir=x; DIR/results_dir/ stays", parser) == \
        "give --results-dir, or set --data-dir x; DIR/results_dir/ stays"
    assert in_flags("use another checkpoint_dir", parser) == "use another checkpoint_dir"  # not this command's


def test_evaluate_scores_held_out_pairs_without_training(tiny):
    trainer = small_trainer(tiny, "autoemb", dtype=torch.float32)
    learner = trainer.learner
    before = snapshot(trainer)
    popularity = learner.context.popularity["user"].clone()
    pairs = trainer.stream.pairs(tiny.user[60:80], tiny.item[60:80], tiny.rating[60:80])
    with torch.no_grad():
        logits, _ = learner.predict(pairs)
    loss, correct = loss_and_correct(logits, pairs.target, "regression")
    assert not changed(before, snapshot(trainer)) and torch.equal(popularity, learner.context.popularity["user"])
    view = trainer.stream.view(torch.arange(60, 80))  # the same pairs through the streaming path
    expected_loss, expected_correct = loss_and_correct(learner.scores(view)[0], view.target, "regression")
    assert torch.equal(loss, expected_loss) and torch.equal(correct, expected_correct)


@pytest.mark.parametrize("method", ["darts", "autoemb"])
def test_incoming_validation_predicts_before_theta_sees_the_batch(tiny, method):
    """validation=incoming: Theta learns from the incoming batch, but only after predicting it."""
    data = tiny.head(400)
    flipped = copy.copy(data)
    flipped.rating = data.rating.copy()
    flipped.rating[60:] = 6 - flipped.rating[60:]
    cfg = Config(method=method, validation="incoming", **SMALL)
    trainers = [StreamingTrainer(data, cfg), StreamingTrainer(flipped, cfg)]
    predictions = []
    for trainer in trainers:
        for index in range(3):
            trainer.step(index)
        before = snapshot(trainer)
        predict = trainer.learner.predict

        def recording(view, predict=predict):
            logits, weights = predict(view)
            predictions.append(logits.clone())
            return logits, weights
        trainer.learner.predict = recording
        trainer.step(3)
        moved = changed(before, snapshot(trainer))
        assert any(k.startswith("theta.") for k in moved)  # Theta did learn from the batch
    assert len(predictions) == 2
    torch.testing.assert_close(predictions[0], predictions[1], rtol=0, atol=0)
    assert changed(snapshot(trainers[0]), snapshot(trainers[1]))


def weights_of(trainer):
    learner = trainer.learner
    state = {f"table.{s}": learner.tables[s].weight for s in SIDES}
    state.update({f"dlrs.{k}": v for k, v in learner.dlrs.state_dict().items()})
    if hasattr(learner.selector, "controllers"):
        state.update({f"controllers.{k}": v for k, v in learner.selector.controllers.state_dict().items()})
    return state


@pytest.mark.parametrize("validation", ["uniform", "incoming"])
@pytest.mark.parametrize("method, architecture", [
    ("fse", {}), ("sam", {}), ("darts", {}), *(("autoemb", {"transform": t}) for t in TRANSFORMS), ("fixed-16", {}),
    ("fse", {"head_batchnorm": True}), ("autoemb", {"head_batchnorm": True, "predict_batchnorm": "batch"}),
    ("fse", {"input_batchnorm": True})],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_fast_and_plain_paths_compute_the_same_run(tiny, method, architecture, validation):
    """Per-id transforms with count-weighted BatchNorm, the split first layer, tanh via sigmoid, fused Adam
    and the reused training forward change how the run is computed, not what it computes, for every transform and
    with ESAPN's head."""
    runs = {}
    for fast in (True, False):
        trainer = small_trainer(tiny, method, steps=12, fast_path=fast, validation=validation, **architecture)
        records = [trainer.step(i) for i in range(12, 16)]
        runs[fast] = trainer, records
    (fast, fast_steps), (plain, plain_steps) = runs[True], runs[False]
    for a, b in zip(fast_steps, plain_steps):
        torch.testing.assert_close(a.loss, b.loss, rtol=1e-9, atol=1e-12)
        assert torch.equal(a.correct, b.correct)
        for s in SIDES:
            if a.weights[s] is not None:
                torch.testing.assert_close(a.weights[s], b.weights[s], rtol=1e-9, atol=1e-12)
    plain_weights = weights_of(plain)
    for name, value in weights_of(fast).items():
        torch.testing.assert_close(value, plain_weights[name], rtol=1e-8, atol=1e-11, msg=name)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("transform", TRANSFORMS)
def test_each_transform_is_eq_1_2_and_7_written_out_per_sample(transform, fast_path):
    """A side's representation against a loop over samples: e_j = (1/N) sum_n w_n(id_j) f(W_n e_n(id_j) + b_n),
    f being BatchNorm on the batch's statistics (over samples, not ids) then tanh, or one of them, or neither."""
    cfg = Config(method="autoemb", dims=(2, 3, 4), transform=transform, fast_path=fast_path)
    torch.manual_seed(0)
    dlrs = DLRS(cfg).double()
    assert len(dlrs.bn["user"]) == (3 if "bn" in transform else 0)  # no BatchNorm parameters where there is none
    with torch.no_grad():
        for bn in dlrs.bn["user"]:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    gen = torch.Generator().manual_seed(3)
    rows = torch.randn(5, 9, generator=gen, dtype=torch.float64)
    weights = torch.softmax(torch.randn(5, 3, generator=gen, dtype=torch.float64), 1)
    counts = torch.tensor([1, 4, 2, 1, 3])
    inverse = torch.repeat_interleave(torch.arange(5), counts)[torch.randperm(11, generator=gen)]
    got = dlrs.represent("user", rows, weights, inverse, counts, "batch")
    if fast_path:
        got = got.index_select(0, inverse)
    spaces = []
    for n, (start, d) in enumerate(zip((0, 2, 5), cfg.dims)):
        z = [dlrs.proj["user"][n].weight @ rows[j, start:start + d] + dlrs.proj["user"][n].bias for j in inverse]
        if "bn" in transform:
            bn = dlrs.bn["user"][n]
            mean = sum(z) / len(z)
            var = sum((x - mean) ** 2 for x in z) / len(z)
            z = [bn.weight * (x - mean) / torch.sqrt(var + bn.eps) + bn.bias for x in z]
        spaces.append([torch.tanh(x) if "tanh" in transform else x for x in z])
    naive = torch.stack([sum(weights[j, n] * spaces[n][k] for n in range(3)) / 3 for k, j in enumerate(inverse)])
    torch.testing.assert_close(got, naive, rtol=1e-6, atol=1e-7)  # tanh via sigmoid: error below 2e-7


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("head", ["head_batchnorm", "input_batchnorm"])
def test_esapn_head_is_batchnorm_linear_batchnorm_tanh_written_out_per_sample(fast_path, head):
    """head_batchnorm: x_j = BN([u_j; i_j]) over the batch's samples, then per hidden layer Linear -> BN -> tanh,
    then the output Linear; FSE's rows go straight in. input_batchnorm: the first BatchNorm only."""
    cfg = Config(method="fse", fse_width=3, hidden=(4, 5), fast_path=fast_path, **{head: True})
    torch.manual_seed(0)
    dlrs = DLRS(cfg).double()
    bns = [dlrs.head_bn["user"], dlrs.head_bn["item"], *dlrs.head_bn["hidden"]]
    assert len(bns) == (4 if head == "head_batchnorm" else 2)
    with torch.no_grad():
        for bn in bns:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    gen = torch.Generator().manual_seed(4)
    sides = []
    for n_ids, counts in ((4, [3, 1, 2, 4]), (3, [5, 2, 3])):
        counts = torch.tensor(counts)
        inverse = torch.repeat_interleave(torch.arange(n_ids), counts)[torch.randperm(10, generator=gen)]
        sides.append((torch.randn(n_ids, 3, generator=gen, dtype=torch.float64), None, inverse, counts))
    got = dlrs(*sides, "batch").squeeze(1)

    def normalized(xs, bn):
        mean = sum(xs) / len(xs)
        var = sum((x - mean) ** 2 for x in xs) / len(xs)
        return [bn.weight * (x - mean) / torch.sqrt(var + bn.eps) + bn.bias for x in xs]

    users = normalized([sides[0][0][j] for j in sides[0][2]], bns[0])
    items = normalized([sides[1][0][j] for j in sides[1][2]], bns[1])
    xs = [torch.cat([u, i]) for u, i in zip(users, items)]
    for n in range(2):
        linear = dlrs.head[2 * n]
        xs = [linear.weight @ x + linear.bias for x in xs]
        xs = [torch.tanh(x) for x in (normalized(xs, bns[2 + n]) if head == "head_batchnorm" else xs)]
    naive = torch.stack([dlrs.head[-1].weight @ x + dlrs.head[-1].bias for x in xs]).squeeze(1)
    torch.testing.assert_close(got, naive, rtol=1e-6, atol=1e-7)


def test_weighted_batchnorm_equals_batchnorm_on_the_expanded_batch():
    from autoemb_core.model import batch_norm
    gen = torch.Generator().manual_seed(1)
    unique = torch.randn(7, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([1, 3, 1, 2, 5, 1, 1])
    inverse = torch.repeat_interleave(torch.arange(7), counts)
    a, b = torch.nn.BatchNorm1d(5).double(), torch.nn.BatchNorm1d(5).double()
    with torch.no_grad():
        for bn in (a, b):
            bn.weight.copy_(torch.linspace(0.5, 2, 5))
            bn.bias.copy_(torch.linspace(-1, 1, 5))
    weighted = batch_norm(a, unique, "train", counts, len(inverse)).index_select(0, inverse)
    expanded = batch_norm(b, unique.index_select(0, inverse), "train")
    torch.testing.assert_close(weighted, expanded)
    torch.testing.assert_close(a.running_mean, b.running_mean)
    torch.testing.assert_close(a.running_var, b.running_var)
    probe = torch.randn(weighted.shape, generator=gen, dtype=torch.float64)
    g_weighted, = torch.autograd.grad((weighted * probe).sum(), unique)
    g_expanded, = torch.autograd.grad((expanded * probe).sum(), unique)
    torch.testing.assert_close(g_weighted, g_expanded)


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("method", ["fse", "autoemb"])
def test_a_batch_of_one_interaction_trains(tiny, method, fast_path):
    """torch's BatchNorm refuses a batch of one; a stream can end with one (here 4001 = 8 x 500 + 1)."""
    cfg = Config(method=method, batch_size=500, offline_fraction=0.5, progress=False, fast_path=fast_path)
    data = tiny.head(4001)
    trainer = StreamingTrainer(data, cfg)
    assert trainer.batches.stop[-1] - trainer.batches.start[-1] == 1
    result = trainer.run()
    assert np.isfinite(result.summary["online_loss"]) and len(result.samples) == 2001
