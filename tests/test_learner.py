"""The learner contract (autoemb_core.learner) for every method of the method table: ``predict`` learns nothing,
``learn`` learns (and records the batch in the per-id context even when it trains on none of its samples),
``theta_step`` moves Theta alone and only for the bilevel methods, and a held-out share never reaches W."""
import math

import numpy as np
import pytest
import torch

import autoemb_core as ae
from autoemb_core.config import Config
from autoemb_core.learner import Learner
from autoemb_core.methods import BILEVEL, METHODS, SELECTING, TABLE
from autoemb_core.model import SIDES
from autoemb_core.stream import Stream
from autoemb_core.train import LEARNERS, StreamingTrainer, make_learner

SMALL = dict(dims=(2, 4), hidden=(8,), controller_hidden=(6,), batch_size=20, progress=False)
CPU = torch.device("cpu")
BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(scope="module")
def tiny():
    return ae.load_dataset("synthetic-tiny").head(400)


def learner_after(data, method, batches=3, **kw):
    """``method``'s learner from :func:`make_learner`, and its stream, after the stream's route, predict and
    learn on the first ``batches`` batches (no Theta step): optimizer moments, context and stored ids exist."""
    cfg = Config(method=method, **{**SMALL, **kw}).resolved()
    learner = make_learner(cfg, data, CPU, torch.float64)
    stream = Stream(data, cfg.task, CPU, torch.float64)
    for index in range(batches):
        view = stream.view(slice(20 * index, 20 * index + 20))
        learner.route(view)
        learner.predict(view)
        learner.learn(view)
    return cfg, learner, stream


def snapshot(learner) -> dict:
    """Every tensor (and number) of ``learner.state()``, cloned, keyed by its path."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            out[prefix] = value.detach().clone()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}.{i}", v)
    walk("", learner.state())
    return out


def changed(before: dict, after: dict) -> set:
    """The keys whose values differ, appeared (an optimizer's first step creates its state) or disappeared."""
    same = {k for k in before.keys() & after.keys()
            if type(before[k]) is type(after[k]) and (torch.equal(before[k], after[k])
                                                      if isinstance(before[k], torch.Tensor) else before[k] == after[k])}
    return (before.keys() | after.keys()) - same


def batchnorm_statistics(keys) -> set:
    return {k for k in keys if k.startswith("dlrs.bn.") and k.rsplit(".", 1)[-1] in BN_STATISTICS}


@pytest.mark.parametrize("method", METHODS)
def test_predict_learns_nothing_and_learn_learns(tiny, method):
    """Under no_grad (how held-out pairs are scored) ``predict`` changes no tensor of ``state()``; ``learn`` on the
    batch just predicted then changes what the method learns (W, or the reference's counts and biases) and
    counts the batch in the context."""
    cfg, learner, stream = learner_after(tiny, method)
    assert isinstance(learner, Learner) and type(learner) is LEARNERS[TABLE[method].learner]
    view = stream.view(slice(60, 80))
    learner.route(view)  # hard selection stores the batch's new ids first, as the stream does
    before = snapshot(learner)
    with torch.no_grad():
        logits, weights = learner.predict(view)
    assert not changed(before, snapshot(learner))
    assert logits.shape == (20, cfg.n_outputs) and torch.isfinite(logits).all()
    assert set(weights) == set(SIDES)
    for s in SIDES:
        assert (weights[s] is None) == (method not in SELECTING)
        if weights[s] is not None:
            assert weights[s].shape == (len(view.ids[s]), len(cfg.dims))
    learner.learn(view)
    moved = changed(before, snapshot(learner))
    assert {"context.popularity.user", "context.popularity.item"} <= moved
    assert moved - {k for k in moved if k.startswith("context.")}, "learn trained nothing"


@pytest.mark.parametrize("predict_batchnorm", ["running", "batch"])
@pytest.mark.parametrize("method", METHODS)
def test_predict_as_the_stream_calls_it_only_advances_batchnorm_statistics(tiny, method, predict_batchnorm):
    """The stream predicts with grad enabled. Where the learner reuses W's training forward as the prediction
    (``reuse_training_forward``: the fast path, and batch statistics in both, so for a selecting method only with
    ``predict_batchnorm: batch``), that forward runs in BatchNorm's training mode: it advances the running
    statistics (once per batch: ``learn`` then reuses it instead of running its own), and nothing else. Otherwise
    ``predict`` changes nothing. Either way it predicts what ``predict`` under no_grad predicts."""
    cfg, learner, stream = learner_after(tiny, method, predict_batchnorm=predict_batchnorm)
    view = stream.view(slice(60, 80))
    learner.route(view)
    before = snapshot(learner)
    with torch.no_grad():
        expected, _ = learner.predict(view)
    logits, _ = learner.predict(view)
    moved = changed(before, snapshot(learner))
    reused = getattr(learner, "reuse_training_forward", False)
    assert reused == (cfg.spec.learner == "embedding" and (not cfg.selecting or predict_batchnorm == "batch"))
    assert moved == batchnorm_statistics(moved)
    assert bool(moved) == (reused and cfg.selecting)  # only the selecting architecture has BatchNorm
    assert not logits.requires_grad
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_theta_step_moves_theta_only_and_only_for_the_bilevel_methods(tiny, method):
    """For a method whose Theta learns by the bilevel step, ``theta_step`` changes the selector's state and
    nothing else (W's virtual step moves no table row, DLRS parameter or optimizer moment); for every other
    method it returns NaN and changes nothing."""
    cfg, learner, stream = learner_after(tiny, method)
    bilevel = TABLE[method].theta == "bilevel"
    assert learner.uses_validation == bilevel == (method in BILEVEL)
    train = stream.view(torch.arange(40, 60))  # the batch W last trained on
    validation = stream.view(torch.as_tensor(np.random.default_rng(0).integers(0, 60, 20)))
    before = snapshot(learner)
    ratio = learner.theta_step(train, validation)
    moved = changed(before, snapshot(learner))
    if bilevel:
        assert math.isfinite(ratio) and ratio >= 0
        assert moved and all(k.startswith("selector.") for k in moved), moved
    else:
        assert math.isnan(ratio) and not moved, moved


@pytest.mark.parametrize("method", METHODS)
def test_learning_from_no_sample_trains_nothing_but_counts_the_batch(tiny, method):
    """``learn(view, keep)`` with ``keep`` all False (a batch wholly held out): nothing trains, and the context
    still records the predicted batch (its ids' popularity goes up by their counts)."""
    _, learner, stream = learner_after(tiny, method)
    view = stream.view(slice(60, 80))
    learner.route(view)
    learner.predict(view)  # as the stream does
    before = snapshot(learner)
    learner.learn(view, torch.zeros(len(view.target), dtype=torch.bool))
    after = snapshot(learner)
    moved = changed(before, after)
    assert {"context.popularity.user", "context.popularity.item"} <= moved
    assert all(k.startswith("context.") for k in moved), moved
    for s in SIDES:
        key = f"context.popularity.{s}"
        assert torch.equal(after[key][view.ids[s]], before[key][view.ids[s]] + view.counts[s])
        others = torch.ones(len(after[key]), dtype=torch.bool)
        others[view.ids[s]] = False
        assert torch.equal(after[key][others], before[key][others])


def samples(view) -> torch.Tensor:
    """A view's samples in order, one (user, item, target) row each."""
    return torch.stack([view.column("user").double(), view.column("item").double(), view.target.double()], 1)


@pytest.mark.parametrize("method", ["fse", "item-mean", "biases", "sam", "darts", "autoemb", "autoemb-hard"])
def test_a_holdout_stream_never_trains_w_on_held_out_positions(tiny, method):
    """validation=holdout: over the whole stream, W's steps see exactly the samples that are not held out, in
    stream order, and each unrolled step of Theta's hypergradient the previous batch's kept samples only."""
    trainer = StreamingTrainer(tiny, Config(method=method, validation="holdout", holdout_fraction=0.3, **SMALL),
                               dtype=torch.float64)
    learner, held = trainer.learner, trainer.held
    assert held.any() and not held.all()
    fitted, unrolled, current = [], {}, [None]
    fit, theta_step = learner.fit, learner.theta_step

    def recording_fit(view, weights):
        fitted.append(samples(view))
        return fit(view, weights)

    def recording_theta_step(train, validation):
        unrolled[current[0]] = samples(train)
        return theta_step(train, validation)
    learner.fit, learner.theta_step = recording_fit, recording_theta_step
    for index in range(len(trainer.batches)):
        current[0] = index
        trainer.step(index)
    everything = samples(trainer.stream.view(slice(0, len(tiny))))
    torch.testing.assert_close(torch.cat(fitted), everything[torch.as_tensor(~held)], rtol=0, atol=0)
    assert bool(unrolled) == (method in BILEVEL)
    for index, train in unrolled.items():
        start, stop = int(trainer.batches.start[index - 1]), int(trainer.batches.stop[index - 1])
        torch.testing.assert_close(train, everything[start:stop][torch.as_tensor(~held[start:stop])], rtol=0, atol=0)
